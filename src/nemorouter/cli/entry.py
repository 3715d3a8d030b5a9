"""The `nemorouter` command's entry point: the compiled build goes in before any command's module loads.

`serve` and `demo` run the request path, so they load the mypyc build of its hot modules
(tools/build_native.py, nemorouter/_native.py) when it matches the sources; every other command,
and `import nemorouter` itself, runs the sources as they are, with no import hook. The hook must
be in place before the first hot module is imported, and the commands' modules import most of
them: so this module imports nothing of NemoRouter but `_native` until it has decided.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nemorouter import _native

SERVING_COMMANDS = frozenset({"serve", "demo"})


def command_of(args: Sequence[str]) -> str | None:
    """The subcommand `args` (argv without the program) runs: its first word that is not an option."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def prepare(args: Sequence[str]) -> None:
    """Install the compiled build for a serving command (NEMO_NATIVE=0 still turns it off)."""
    if command_of(args) in SERVING_COMMANDS:
        _native.install()


def main() -> None:
    prepare(sys.argv[1:])
    from nemorouter.cli.main import main as run_command

    run_command()
