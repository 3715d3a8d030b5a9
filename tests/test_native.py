"""The mypyc build of the hot modules (tools/build_native.py, loaded by nemorouter._native).

`make test` builds it first, so here it must be current and in use; it must never shadow an
edited source (the whole set falls back to plain Python), and plain Python must stay correct:
the money and provider suites run again with the build turned off.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemorouter import _native

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "nemorouter"
spec = importlib.util.spec_from_file_location("build_native", ROOT / "tools" / "build_native.py")
assert spec is not None and spec.loader is not None
build_native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_native)


def _loaded_from(module: str, **env: str) -> str:
    code = f"import nemorouter, {module} as m; print(m.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_build_is_current_and_in_use() -> None:
    if os.environ.get("NEMO_NATIVE") == "0":
        pytest.skip("NEMO_NATIVE=0: plain Python asked for")
    assert build_native.current(), "the native build is missing or stale: run `make native` (make test does)"
    assert _native.status is None, _native.status
    assert _native.compiled_modules() == sorted(build_native.module_name(m) for m in build_native.MODULES)
    for name in _native.compiled_modules():
        assert sys.modules.get(name) is None or sys.modules[name].__file__.endswith(".so"), name
    assert _loaded_from("nemorouter.service.gateway").endswith(".so")


def test_nemo_native_0_loads_the_sources() -> None:
    assert _loaded_from("nemorouter.service.gateway", NEMO_NATIVE="0") == str(
        PACKAGE / "service" / "gateway.py"
    )


def _fake_build(tmp_path: Path, sources: dict[str, str]) -> Path:
    root = tmp_path / "build"
    root.mkdir()
    files = {name: name.replace(".", "/") + ".so" for name in sources}
    manifest = {"python": sys.version, "sources": sources, "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def isolated_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """install() adds a finder and sets the module's status: undo both after each test."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(_native, "status", _native.status)
    monkeypatch.delenv("NEMO_NATIVE", raising=False)


@pytest.mark.usefixtures("isolated_install")
def test_one_edited_source_turns_the_whole_build_off(tmp_path: Path) -> None:
    package = tmp_path / "nemorouter"
    (package / "money").mkdir(parents=True)
    (package / "jsonx.py").write_text("A = 1\n")
    (package / "money" / "cost.py").write_text("B = 2\n")
    sources = {
        "nemorouter.jsonx": _native.sha256(package / "jsonx.py"),
        "nemorouter.money.cost": _native.sha256(package / "money" / "cost.py"),
    }
    root = _fake_build(tmp_path, sources)
    before = list(sys.meta_path)

    (package / "money" / "cost.py").write_text("B = 3\n")  # edited after the build
    _native.install(package, root)
    assert _native.status is not None and _native.status.startswith("stale: nemorouter.money.cost")
    assert sys.meta_path == before

    (package / "money" / "cost.py").write_text("B = 2\n")  # back to what was compiled
    _native.install(package, root)
    assert _native.status is None
    finder = sys.meta_path[0]
    assert finder not in before
    found = finder.find_spec("nemorouter.money.cost")
    assert found is not None and found.origin == str(root / "nemorouter" / "money" / "cost.so")
    assert finder.find_spec("nemorouter.money.prices") is None  # not in the build: the sources


@pytest.mark.usefixtures("isolated_install")
def test_a_missing_source_or_another_python_turns_it_off(tmp_path: Path) -> None:
    root = _fake_build(tmp_path, {"nemorouter.gone": "0" * 64})
    _native.install(tmp_path / "nemorouter", root)
    assert _native.status is not None and _native.status.startswith("stale: nemorouter.gone")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "python": "2.7"}))
    _native.install(tmp_path / "nemorouter", root)
    assert _native.status == "built for another Python"
    _native.install(tmp_path / "nemorouter", tmp_path / "nowhere")
    assert _native.status is not None and _native.status.startswith("not built")


def test_plain_python_passes_the_money_provider_and_client_suites() -> None:
    """What a developer runs between an edit and the next `make`: the same code, uncompiled."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/money",
            "tests/providers",
            "tests/engine",
        ],
        cwd=ROOT,
        env={**os.environ, "NEMO_NATIVE": "0"},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "[100%]" in proc.stdout  # every test ran (pytest.ini asks for -q: no summary line)
