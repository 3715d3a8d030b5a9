"""The hash-pinned locks stay true to pyproject.toml: every pin there is locked at the same
version, and every locked package carries hashes (`pip install --require-hashes` refuses it
otherwise). A pin changed without `make lock` fails here, not at someone's install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKED = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.M)


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def locked(path: Path) -> dict[str, str]:
    text = path.read_text()
    found = {_name(m[1]): m[2] for m in LOCKED.finditer(text)}
    entries = re.findall(r"^[A-Za-z0-9._-]+==", text, re.M)
    assert len(found) == len(entries), f"{path.name}: an entry without hashes"
    return found


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])
    for extra in project["project"]["optional-dependencies"].values():
        specs += extra
    out = {}
    for spec in specs:
        name, _, version = spec.partition("==")
        assert version, f"pyproject.toml: {spec!r} is not pinned with =="
        out[_name(name.split("[")[0])] = version
    return out


def test_every_pin_is_locked_at_its_version() -> None:
    lock = locked(ROOT / "requirements" / "dev.lock")
    drifted = {
        name: (version, lock.get(name)) for name, version in pins().items() if lock.get(name) != version
    }
    assert not drifted, f"pyproject.toml pin vs lock (run `make lock`): {drifted}"


def test_pip_itself_is_locked() -> None:
    assert "pip" in locked(ROOT / "requirements" / "pip.lock")


def test_an_entry_without_hashes_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lock"
    bad.write_text("aiohttp==3.14.5 \\\n    --hash=sha256:" + "0" * 64 + "\nrequests==2.0.0\n")
    try:
        locked(bad)
    except AssertionError as exc:
        assert "without hashes" in str(exc)
    else:
        raise AssertionError("a lock entry without hashes passed")
