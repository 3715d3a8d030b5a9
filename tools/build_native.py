"""Compile the request path's modules with mypyc, into the virtual environment, never the source tree.

`make native` runs this (so do `make test` and `make bench`; `make run` starts it in the
background and serves plain Python meanwhile). The extension modules go to
`<venv>/nemorouter-native/` with a manifest of each source's SHA-256; `nemorouter._native` loads
them (in `serve` and `demo`) only while every listed source is unchanged, so an edited `.py` is
never shadowed by an old build: the whole set falls back to plain Python until the next build.
The code is the same code either way; mypyc turns its type annotations into native calls and
attribute slots (about a fifth less CPU on these modules), which is why only fully annotated, hot
modules are listed.

A build is never seen half-made: it is staged in a hidden directory beside the final one (same
file system) and renamed into place whole, manifest included, under a lock that also keeps two
builds (a background one and `make test`'s) from running at once.

    python tools/build_native.py                           # build (or rebuild) the set
    python tools/build_native.py --if-stale                # build only if a listed source changed
    python tools/build_native.py --if-stale --background   # the same, detached (what `make run` does)
    python tools/build_native.py --clean                   # remove the build: plain Python everywhere
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nemorouter import _native

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "nemorouter"
# Hot on every request (see docs/architecture.md, "Speed"). A module here must not be subclassed,
# monkeypatched or given new attributes from interpreted code (mypyc makes its classes native),
# and its annotations must hold at run time: a compiled function given a value of another type
# raises TypeError. (So `Usage`, whose counts come from providers, takes `object`s and raises
# its own ValueError for a float, a bool or a negative number.)
MODULES = (
    "nemorouter/app/auth_gate.py",
    "nemorouter/web/body.py",
    "nemorouter/app/fast.py",
    "nemorouter/app/headers.py",
    "nemorouter/app/relay_pump.py",
    "nemorouter/app/cors.py",
    "nemorouter/web/throttle.py",
    "nemorouter/web/whole_response.py",
    "nemorouter/engine/connection.py",
    "nemorouter/engine/dial.py",
    "nemorouter/engine/dispatch.py",
    "nemorouter/engine/outbox.py",
    "nemorouter/engine/health.py",
    "nemorouter/engine/http.py",
    "nemorouter/engine/http1.py",
    "nemorouter/engine/pool.py",
    "nemorouter/engine/proxy.py",
    "nemorouter/engine/request_head.py",
    "nemorouter/engine/sse.py",
    "nemorouter/frontdoors/json_body.py",
    "nemorouter/frontdoors/openai_chat.py",
    "nemorouter/jsonx.py",
    "nemorouter/limits/gcra.py",
    "nemorouter/limits/local.py",
    "nemorouter/limits/redis.py",
    "nemorouter/logs.py",
    "nemorouter/money/amounts.py",
    "nemorouter/money/cost.py",
    "nemorouter/money/holds.py",
    "nemorouter/money/prices.py",
    "nemorouter/money/settlement.py",
    "nemorouter/money/usage.py",
    "nemorouter/money/windows.py",
    "nemorouter/providers/bounds.py",
    "nemorouter/providers/canonical.py",
    "nemorouter/providers/openai_wire.py",
    "nemorouter/providers/output_limit.py",
    "nemorouter/providers/types.py",
    "nemorouter/service/admission.py",
    "nemorouter/service/auth.py",
    "nemorouter/service/billing.py",
    "nemorouter/service/bodies.py",
    "nemorouter/service/gateway.py",
    "nemorouter/service/keyformat.py",
    "nemorouter/service/metrics.py",
    "nemorouter/service/routing.py",
    "nemorouter/service/selection.py",
    "nemorouter/service/relay.py",
    "nemorouter/service/settlement.py",
    "nemorouter/store/cap_rule.py",
    "nemorouter/store/records.py",
    "nemorouter/store/sqlite/money_mirror.py",
    "nemorouter/store/sqlite/outcome.py",
    "nemorouter/timeutil.py",
)


def out_dir() -> Path:
    return Path(sys.prefix) / _native.BUILD_DIR


STAGING_PREFIX = f".{_native.BUILD_DIR}-"  # hidden siblings of out_dir(): a build being made or dropped


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time per virtual environment (held until the build is in place)."""
    with _native.lock_path(out_dir()).open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def module_name(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def current() -> bool:
    """Whether the build is of exactly these modules, for this interpreter, from these sources."""
    manifest = _native.read_manifest(out_dir())
    return (
        _native.problem(manifest, PACKAGE) is None
        and manifest is not None
        and sorted(manifest["sources"]) == sorted(module_name(rel) for rel in MODULES)
    )


def _module_of(path: Path, lib: Path) -> str:
    """nemorouter/app/fast.cpython-311-x86_64-linux-gnu.so -> nemorouter.app.fast"""
    rel = str(path.relative_to(lib))
    suffix = next(s for s in importlib.machinery.EXTENSION_SUFFIXES if rel.endswith(s))
    return rel.removesuffix(suffix).replace("/", ".")


def build() -> None:
    hashes = {module_name(rel): _native.sha256(SRC / rel) for rel in MODULES}
    final = out_dir()
    for leftover in final.parent.glob(STAGING_PREFIX + "*"):  # from a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=final.parent))
    try:
        _compile(hashes, staging)
        _swap_in(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"native: {len(hashes)} modules compiled into {final}")


def _swap_in(staging: Path, final: Path) -> None:
    """Put the finished build in place with renames only: `final` is either the old build, absent
    (plain Python for a process starting in that instant), or the new build, never a partial one."""
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=final.parent))
        os.rename(final, retired / "old")
        os.rename(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, final)


def _compile(hashes: dict[str, str], staging: Path) -> None:
    """mypyc and the C compiler, into `staging`; its manifest is written last."""
    from mypyc.build import mypycify  # the dev dependencies: mypy ships mypyc
    from setuptools import setup

    with tempfile.TemporaryDirectory(prefix="nemo-native-") as tmp:
        cwd = os.getcwd()
        os.chdir(SRC)  # mypyc names modules by their path: nemorouter/app/fast.py -> nemorouter.app.fast
        try:
            extensions = mypycify(
                [
                    *MODULES,
                    "--config-file",
                    str(ROOT / "pyproject.toml"),
                    "--cache-dir",
                    str(Path(tmp) / "mypy"),
                ],
                opt_level="3",
                target_dir=str(Path(tmp) / "c"),
                group_name="nemorouter_native",
            )
            setup(
                name="nemorouter-native",
                ext_modules=extensions,
                script_args=[
                    "-q",
                    "build_ext",
                    "--build-lib",
                    str(staging),
                    "--build-temp",
                    str(Path(tmp) / "o"),
                ],
            )
        finally:
            os.chdir(cwd)
        files = {_module_of(p, staging): str(p.relative_to(staging)) for p in staging.rglob("*.so")}
        missing = sorted(set(hashes) - set(files))
        if missing:
            raise SystemExit(f"mypyc built no extension for: {', '.join(missing)}")
    manifest = {"python": sys.version, "sources": hashes, "files": files}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def start_in_background() -> None:
    """Detach a low-priority `--if-stale` build and return at once (its output: a log in the venv)."""
    log = out_dir().with_name(_native.BUILD_DIR + ".log")
    with log.open("wb") as out:
        subprocess.Popen(
            [sys.executable, __file__, "--if-stale"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal's Ctrl-C that stops `make run`
            preexec_fn=lambda: os.nice(10),  # the demo's start comes first on a busy machine
        )
    print(
        f"native: compiling the hot modules in the background (log: {log}); serving plain Python"
        " until a later `nemorouter serve` starts with it (`make native` waits for it)",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clean", action="store_true", help="remove the build")
    parser.add_argument("--if-stale", action="store_true", help="build only if a listed source changed")
    parser.add_argument("--background", action="store_true", help="build in a detached process")
    opts = parser.parse_args()
    if opts.if_stale and current():
        return 0
    if opts.background:
        start_in_background()
        return 0
    with build_lock():
        if opts.clean:
            shutil.rmtree(out_dir(), ignore_errors=True)
            print(f"native: removed {out_dir()}")
            return 0
        if opts.if_stale and current():  # another build finished while this one waited
            return 0
        print(f"native: compiling {len(MODULES)} modules with mypyc (1-3 minutes)...", flush=True)
        build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
