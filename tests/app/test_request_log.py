"""The one JSON line per request (`RequestLog`): valid JSON with the fixed fields first, exact
timestamps, lines of one event-loop iteration written together, and the logger's level obeyed."""

from __future__ import annotations

import asyncio
import calendar
import io
import logging
import re
import time
from collections.abc import Iterator

import orjson
import pytest

from nemorouter.logs import RequestLog

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def info_level() -> Iterator[None]:
    logger = logging.getLogger("nemorouter.requests")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def lines_of(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_json_with_the_fixed_fields_first_then_the_entry(info_level: None) -> None:
    stream = io.StringIO()
    before = time.time()
    RequestLog(stream).write(
        {"request_id": "gen-1", "cost": "0.000012", "prompt_tokens": 7, "provider": None}
    )
    after = time.time()
    [line] = lines_of(stream)
    assert list(line) == ["ts", "level", "logger", "msg", "request_id", "cost", "prompt_tokens", "provider"]
    assert line["level"] == "info" and line["logger"] == "nemorouter.requests" and line["msg"] == "request"
    assert line["request_id"] == "gen-1" and line["cost"] == "0.000012" and line["provider"] is None
    ts = str(line["ts"])
    assert TS.fullmatch(ts), ts
    stamp = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + int(ts[20:23]) / 1000
    assert int(before * 1000) / 1000 - 0.001 <= stamp <= after + 0.001


def test_an_empty_entry_still_makes_valid_json(info_level: None) -> None:
    stream = io.StringIO()
    RequestLog(stream).write({})
    [line] = lines_of(stream)
    assert list(line) == ["ts", "level", "logger", "msg"]


def test_lines_of_one_loop_iteration_are_written_together(info_level: None) -> None:
    stream = CountingStream()
    log = RequestLog(stream)

    async def burst() -> None:
        for n in range(5):
            log.write({"n": n})
        assert stream.writes == 0  # not yet: at the end of this iteration
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert stream.writes == 1
    assert [line["n"] for line in lines_of(stream)] == [0, 1, 2, 3, 4]


def test_nothing_is_written_above_info() -> None:
    logger = logging.getLogger("nemorouter.requests")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        stream = io.StringIO()
        RequestLog(stream).write({"request_id": "gen-1"})
        assert stream.getvalue() == ""
    finally:
        logger.setLevel(before)
