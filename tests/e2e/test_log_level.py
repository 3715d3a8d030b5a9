"""NEMO_LOG_LEVEL: the one JSON line per request is written at INFO (the default) and not at
WARNING, while warnings still are; a level that does not exist is refused at start."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from conftest import Sim, new_gateway


def request_lines(log: Path) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry for entry in lines if entry.get("logger") == "nemorouter.requests"]


@pytest.mark.parametrize(("level", "written"), [(None, 1), ("WARNING", 0)])
def test_the_request_line_follows_the_level(
    tmp_path: Path, sim: Sim, level: str | None, written: int
) -> None:
    gw = new_gateway(tmp_path, sim)
    if level is not None:
        gw.env["NEMO_LOG_LEVEL"] = level
    gw.start()
    try:
        account = gw.account("1.00")
        key = gw.admin("POST", f"/accounts/{account}/keys", {"name": "k"}).json()["key"]
        gw.openai(key).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        assert gw.stop() == 0
    found = request_lines(gw.data_dir / "gateway.log")
    assert len(found) == written
    if written:
        assert found[0]["level"] == "info" and found[0]["status"] == "success"


def test_an_unknown_level_is_refused(tmp_path: Path) -> None:
    gw = new_gateway(tmp_path, None)
    gw.env["NEMO_LOG_LEVEL"] = "LOUD"
    done = gw.cli("serve", "--port", "0", check=False)
    assert done.returncode != 0 and "NEMO_LOG_LEVEL" in done.stderr
