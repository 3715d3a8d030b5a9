"""Load the mypyc build of the hot modules (tools/build_native.py), when it matches the sources.

The build lives in the virtual environment, not beside the sources, and is used only while
every source it was compiled from is byte-for-byte unchanged: one edited module makes the
whole set fall back to plain Python (compiled modules call each other directly, so a mixed set
could run old code). NEMO_NATIVE=0 turns it off. Either way the behaviour is the same code.
"""

from __future__ import annotations

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

BUILD_DIR = "nemorouter-native"
# Why the build is not in use (None: it is); for `nemorouter serve`'s start-up line and the tests.
status: str | None = "not loaded"


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


def _stale(package_dir: Path, sources: dict[str, str]) -> list[str]:
    out = []
    for name, digest in sources.items():
        path = package_dir.parent.joinpath(*name.split(".")).with_suffix(".py")
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                out.append(name)
        except OSError:
            out.append(name)
    return out


def install(package_dir: Path, root: Path | None = None) -> None:
    """Put the build's finder first on sys.meta_path if the build (in `root`, by default the
    virtual environment's) exists and is current."""
    global status
    root = Path(sys.prefix) / BUILD_DIR if root is None else root
    if os.environ.get("NEMO_NATIVE", "1") == "0":
        status = "off (NEMO_NATIVE=0)"
        return
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        status = "not built (make builds it)"
        return
    if manifest.get("python") != sys.version:
        status = "built for another Python"
        return
    stale = _stale(package_dir, manifest["sources"])
    if stale:
        status = f"stale: {', '.join(sorted(stale))} changed since the build (make rebuilds it)"
        return
    sys.meta_path.insert(0, _NativeFinder(root, manifest["files"]))
    status = None


def compiled_modules() -> list[str]:
    """The modules this process loads from the build (empty when it is not in use)."""
    for finder in sys.meta_path:
        if isinstance(finder, _NativeFinder):
            return finder.modules
    return []
