"""Load the mypyc build of the hot modules (tools/build_native.py), when it matches the sources.

The build lives in the virtual environment, not beside the sources, and is used only while
every source it was compiled from is byte-for-byte unchanged: one edited module makes the
whole set fall back to plain Python (compiled modules call each other directly, so a mixed set
could run old code). NEMO_NATIVE=0 turns it off. Either way the behaviour is the same code.

Nothing is loaded on import: `serve` and `demo` call `install` at their start (cli/entry.py),
before any hot module is imported; everything else (the other commands, the tests' own process,
code importing nemorouter) runs the sources.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

BUILD_DIR = "nemorouter-native"
# Why the build is not in use (None: it is); for `nemorouter serve`'s start-up line and the tests.
status: str | None = "not loaded (only `nemorouter serve` and `demo` load it)"


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the listed modules in the build directory, ahead of the sources."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self._root, self._files = root, files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, self._root / file)

    @property
    def modules(self) -> list[str]:
        return sorted(name for name in self._files if name.startswith("nemorouter."))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_of(package_dir: Path, module: str) -> Path:
    """The source file of `module` (nemorouter.x.y) in the package at `package_dir`."""
    return package_dir.parent.joinpath(*module.split(".")).with_suffix(".py")


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return found


def problem(manifest: dict[str, Any] | None, package_dir: Path) -> str | None:
    """Why the build `manifest` describes can't run the sources in `package_dir` (None: it can)."""
    if manifest is None:
        return "not built (`make native` builds it)"
    if manifest.get("python") != sys.version:
        return "built for another Python"
    stale = []
    for name, digest in manifest["sources"].items():
        try:
            if sha256(source_of(package_dir, name)) != digest:
                stale.append(name)
        except OSError:
            stale.append(name)
    if stale:
        return f"stale: {', '.join(sorted(stale))} changed since the build (`make native` rebuilds it)"
    return None


def install(package_dir: Path | None = None, root: Path | None = None) -> None:
    """Put the build's finder first on sys.meta_path if the build (in `root`, by default the
    virtual environment's) exists and is current for the sources in `package_dir` (by default
    this package's). Call it before the first hot module is imported."""
    global status
    package_dir = Path(__file__).resolve().parent if package_dir is None else package_dir
    root = Path(sys.prefix) / BUILD_DIR if root is None else root
    if os.environ.get("NEMO_NATIVE", "1") == "0":
        status = "off (NEMO_NATIVE=0)"
        return
    manifest = read_manifest(root)
    status = problem(manifest, package_dir)
    early = sorted(name for name in (manifest or {}).get("files", {}) if name in sys.modules)
    if status is None and early:  # half the set compiled would call into the other half's old code
        status = f"not loaded: {', '.join(early)} imported before the build could be installed"
    if status is not None and build_under_way(root):
        status += "; a build is under way (tools/build_native.py), in use from the next start"
    if status is None:
        assert manifest is not None
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _NativeFinder)]
        sys.meta_path.insert(0, _NativeFinder(root, manifest["files"]))


def lock_path(root: Path) -> Path:
    """The file a build holds locked while it runs (tools/build_native.py)."""
    return root.with_name(root.name + ".lock")


def build_under_way(root: Path) -> bool:
    try:
        with lock_path(root).open("rb") as held:
            fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def compiled_modules() -> list[str]:
    """The modules this process loads from the build (empty when it is not in use)."""
    for finder in sys.meta_path:
        if isinstance(finder, _NativeFinder):
            return finder.modules
    return []
