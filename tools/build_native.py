"""Compile the request path's modules with mypyc, into the virtual environment, never the source tree.

`make` runs this after installing (Makefile: the `native` stamp). The extension modules go to
`<venv>/nemorouter-native/` with a manifest of each source's SHA-256; `nemorouter._native` loads
them only while every listed source is unchanged, so an edited `.py` is never shadowed by an old
build: the whole set falls back to plain Python until the next `make`. The code is the same code
either way; mypyc turns its type annotations into native calls and attribute slots (about a
fifth less CPU on these modules), which is why only fully annotated, hot modules are listed.

    python tools/build_native.py             # build (or rebuild) the set
    python tools/build_native.py --if-stale  # build only if a listed source changed (what make runs)
    python tools/build_native.py --clean     # remove the build: plain Python everywhere
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile
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
    "nemorouter/app/body.py",
    "nemorouter/app/fast.py",
    "nemorouter/app/headers.py",
    "nemorouter/app/throttle.py",
    "nemorouter/engine/attempts.py",
    "nemorouter/engine/health.py",
    "nemorouter/engine/http.py",
    "nemorouter/engine/http1.py",
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
    "nemorouter/service/auth.py",
    "nemorouter/service/billing.py",
    "nemorouter/service/bodies.py",
    "nemorouter/service/gateway.py",
    "nemorouter/service/keyformat.py",
    "nemorouter/service/metrics.py",
    "nemorouter/service/routing.py",
    "nemorouter/service/selection.py",
    "nemorouter/store/money_mirror.py",
    "nemorouter/store/records.py",
    "nemorouter/timeutil.py",
)


def out_dir() -> Path:
    return Path(sys.prefix) / _native.BUILD_DIR


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
    from mypyc.build import mypycify  # the dev dependencies: mypy ships mypyc
    from setuptools import setup

    hashes = {module_name(rel): _native.sha256(SRC / rel) for rel in MODULES}
    final = out_dir()
    with tempfile.TemporaryDirectory(prefix="nemo-native-") as tmp:
        staging = Path(tmp) / "lib"
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
        shutil.rmtree(final, ignore_errors=True)
        shutil.move(str(staging), final)
    print(f"native: {len(hashes)} modules compiled into {final}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clean", action="store_true", help="remove the build")
    parser.add_argument("--if-stale", action="store_true", help="build only if a listed source changed")
    opts = parser.parse_args()
    if opts.clean:
        shutil.rmtree(out_dir(), ignore_errors=True)
        print(f"native: removed {out_dir()}")
        return 0
    if opts.if_stale and current():
        return 0
    print(f"native: compiling {len(MODULES)} modules with mypyc (about a minute)...", flush=True)
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
