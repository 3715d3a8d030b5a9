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
from typing import Any

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
        return "not built (make builds it)"
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
        return f"stale: {', '.join(sorted(stale))} changed since the build (make rebuilds it)"
    return None


def install(package_dir: Path, root: Path | None = None) -> None:
    """Put the build's finder first on sys.meta_path if the build (in `root`, by default the
    virtual environment's) exists and is current."""
    global status
    root = Path(sys.prefix) / BUILD_DIR if root is None else root
    if os.environ.get("NEMO_NATIVE", "1") == "0":
        status = "off (NEMO_NATIVE=0)"
        return
    manifest = read_manifest(root)
    status = problem(manifest, package_dir)
    if status is None:
        assert manifest is not None
        sys.meta_path.insert(0, _NativeFinder(root, manifest["files"]))


def compiled_modules() -> list[str]:
    """The modules this process loads from the build (empty when it is not in use)."""
    for finder in sys.meta_path:
        if isinstance(finder, _NativeFinder):
            return finder.modules
    return []
