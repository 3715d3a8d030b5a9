"""The mypyc build of the hot modules (tools/build_native.py, loaded by nemorouter._native).

`make test` builds it first, so here it must be current and in use by `serve`; importing
nemorouter must not load it (only `serve` and `demo` do, at their start); it must never shadow an
edited source (the whole set falls back to plain Python), a build in progress must never be seen
half-made, and the compiled build must stay correct: this process runs the sources, so the money,
provider and client suites run again with the build loaded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import new_gateway
from nemorouter import _native
from nemorouter.cli import entry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "nemorouter"
spec = importlib.util.spec_from_file_location("build_native", ROOT / "tools" / "build_native.py")
assert spec is not None and spec.loader is not None
build_native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_native)

native_wanted = pytest.mark.skipif(os.environ.get("NEMO_NATIVE") == "0", reason="NEMO_NATIVE=0")


def _in_a_process(args: list[str], module: str, **env: str) -> dict[str, object]:
    """What a `nemorouter ARGS` process (its entry point's choice) loads `module` from."""
    code = (
        "import json, sys; from nemorouter.cli import entry; entry.prepare(sys.argv[1:]);"
        f" import {module} as m; from nemorouter import _native;"
        " print(json.dumps({'file': m.__file__, 'status': _native.status,"
        " 'compiled': _native.compiled_modules()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, object] = json.loads(out.stdout)
    return found


def _start_line(tmp_path: Path, **env: str) -> str:
    """The `native:` line a real `nemorouter serve` prints after its address."""
    gateway = new_gateway(tmp_path, None)
    gateway.env.update(env)
    gateway.start()
    try:
        assert gateway.proc is not None and gateway.proc.stdout is not None
        return gateway.proc.stdout.readline().strip()
    finally:
        assert gateway.stop() == 0


@native_wanted
def test_serve_runs_the_build_and_says_so(tmp_path: Path) -> None:
    assert build_native.current(), "the native build is missing or stale: run `make native` (make test does)"
    expected = sorted(build_native.module_name(m) for m in build_native.MODULES)
    for command in (["serve", "--port", "0"], ["demo"]):
        found = _in_a_process(command, "nemorouter.service.gateway")
        assert found["status"] is None and found["compiled"] == expected, found
        assert str(found["file"]).endswith(".so")
    assert _start_line(tmp_path) == f"native: {len(expected)} hot modules compiled (mypyc)"


def test_importing_nemorouter_loads_no_build() -> None:
    """No import hook on import: the other commands, this test process, any importer run the sources."""
    assert not any(isinstance(f, _native._NativeFinder) for f in sys.meta_path)
    for args in ([], ["keys", "list"], ["--help"], ["sim"]):
        found = _in_a_process(args, "nemorouter.service.gateway")
        assert found["file"] == str(PACKAGE / "service" / "gateway.py") and found["compiled"] == []
        assert str(found["status"]).startswith("not loaded"), found


def test_nemo_native_0_serves_the_sources(tmp_path: Path) -> None:
    found = _in_a_process(["serve"], "nemorouter.service.gateway", NEMO_NATIVE="0")
    assert found["file"] == str(PACKAGE / "service" / "gateway.py")
    assert found["status"] == "off (NEMO_NATIVE=0)"
    assert _start_line(tmp_path, NEMO_NATIVE="0") == "native: not in use, off (NEMO_NATIVE=0); plain Python"


def test_the_command_is_the_first_word_that_is_not_an_option() -> None:
    assert entry.command_of(["serve", "--port", "4000"]) == "serve"
    assert entry.command_of(["--help"]) is None
    assert entry.command_of([]) is None
    assert entry.command_of(["keys", "create", "serve"]) == "keys"


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
    (package / "fake_a.py").write_text("A = 1\n")
    (package / "money" / "fake_b.py").write_text("B = 2\n")
    sources = {
        "nemorouter.fake_a": _native.sha256(package / "fake_a.py"),
        "nemorouter.money.fake_b": _native.sha256(package / "money" / "fake_b.py"),
    }
    root = _fake_build(tmp_path, sources)
    before = list(sys.meta_path)

    (package / "money" / "fake_b.py").write_text("B = 3\n")  # edited after the build
    _native.install(package, root)
    assert _native.status is not None and _native.status.startswith("stale: nemorouter.money.fake_b")
    assert sys.meta_path == before

    (package / "money" / "fake_b.py").write_text("B = 2\n")  # back to what was compiled
    _native.install(package, root)
    assert _native.status is None
    finder = sys.meta_path[0]
    assert finder not in before
    found = finder.find_spec("nemorouter.money.fake_b")
    assert found is not None and found.origin == str(root / "nemorouter" / "money" / "fake_b.so")
    assert finder.find_spec("nemorouter.money.prices") is None  # not in the build: the sources
    _native.install(package, root)  # twice: still one finder
    assert sys.meta_path[1:] == before


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


@pytest.mark.usefixtures("isolated_install")
def test_a_module_imported_before_install_keeps_the_whole_build_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled modules call each other directly: half a set next to already-imported sources is refused."""
    package = tmp_path / "nemorouter"
    package.mkdir()
    (package / "fake_early.py").write_text("A = 1\n")
    root = _fake_build(tmp_path, {"nemorouter.fake_early": _native.sha256(package / "fake_early.py")})
    before = list(sys.meta_path)
    monkeypatch.setitem(sys.modules, "nemorouter.fake_early", types.ModuleType("nemorouter.fake_early"))
    _native.install(package, root)
    assert _native.status == "not loaded: nemorouter.fake_early imported before the build could be installed"
    assert sys.meta_path == before


@pytest.mark.usefixtures("isolated_install")
def test_a_build_under_way_is_named_in_the_status(tmp_path: Path) -> None:
    root = tmp_path / "nemorouter-native"
    _native.install(tmp_path / "nemorouter", root)
    assert _native.status == "not built (`make native` builds it)"
    with _native.lock_path(root).open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what tools/build_native.py holds while it builds
        _native.install(tmp_path / "nemorouter", root)
    assert _native.status == (
        "not built (`make native` builds it); a build is under way (tools/build_native.py),"
        " in use from the next start"
    )


def test_a_build_in_progress_leaves_the_current_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new build is staged beside the old one (same file system) and renamed in whole: until
    then `serve` finds the old build untouched, and no staging directory is left behind."""
    venv = tmp_path / "venv"
    final = venv / "nemorouter-native"
    final.mkdir(parents=True)
    (final / "manifest.json").write_text('{"old": true}')
    monkeypatch.setattr(build_native, "out_dir", lambda: final)
    seen: list[tuple[Path, str]] = []

    def compile_into(hashes: dict[str, str], staging: Path) -> None:
        seen.append((staging, (final / "manifest.json").read_text()))
        (staging / "manifest.json").write_text('{"new": true}')

    monkeypatch.setattr(build_native, "_compile", compile_into)
    build_native.build()
    ((staging, during),) = seen
    assert staging.parent == venv and staging.name.startswith(".nemorouter-native-")
    assert during == '{"old": true}'
    assert (final / "manifest.json").read_text() == '{"new": true}'
    assert sorted(p.name for p in venv.iterdir()) == ["nemorouter-native"]

    def fail(hashes: dict[str, str], staging: Path) -> None:
        (staging / "manifest.json").write_text('{"half": true}')
        raise RuntimeError("the C compiler died")

    monkeypatch.setattr(build_native, "_compile", fail)
    with pytest.raises(RuntimeError):
        build_native.build()
    assert (final / "manifest.json").read_text() == '{"new": true}'
    assert sorted(p.name for p in venv.iterdir()) == ["nemorouter-native"]


@native_wanted
def test_the_compiled_build_passes_the_money_provider_and_client_suites() -> None:
    """This process runs the sources; the same suites again with the build loaded first, as `serve` does."""
    code = (
        "import sys; from nemorouter import _native; _native.install();"
        " assert _native.status is None, _native.status;"
        " import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    )
    suites = ["tests/money", "tests/providers", "tests/engine"]
    # -n 0: in this process, not on pytest-xdist workers (they would run the sources, not the build).
    proc = subprocess.run(
        [sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", "-n", "0", *suites],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "[100%]" in proc.stdout  # every test ran (pytest.ini asks for -q: no summary line)
