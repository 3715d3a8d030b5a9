"""Logs: one JSON object per line on standard error."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


# Anything shaped like a credential: our keys, provider keys (OpenAI/Anthropic `sk-...`, Google
# `AIza...`), bearer tokens, the operator token. Redacted whatever the log call wrote.
_SECRET = re.compile(
    r"sk-nemo-(?:mgmt-)?v1-[0-9A-Za-z]+|sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{10,}|nemo-admin-[A-Za-z0-9_\-]+"
    r"|(?i:bearer)\s+[^\s\"',]+"
)


def redact(text: str) -> str:
    return (
        _SECRET.sub("[redacted]", text)
        if ("sk-" in text or "AIza" in text or "earer" in text or "nemo-admin" in text)
        else text
    )


class RedactSecrets(logging.Filter):
    """The one filter every log line passes: secrets never reach standard error."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits from an untrusted report
            return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")


_MILLIS = [b"%03d" % ms for ms in range(1000)]
_FIXED = b'Z","level":"info","logger":"nemorouter.requests","msg":"request"'


class RequestLog:
    """The one JSON line per request, written without the logging machinery (it is on the hot
    path): lines made in one event-loop iteration are written together. The fields are ids,
    names from the catalog, numbers and exact money text — no free text, so nothing to redact.
    Obeys the level of the `nemorouter.requests` logger (INFO), read again each second."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._second, self._head, self._enabled = -1, b"", False
        self._logger = logging.getLogger("nemorouter.requests")

    def write(self, entry: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # once a second: the formatted second, and the logger's level
            self._second = second
            self._head = b'{"ts":"%s.' % time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._enabled = self._logger.isEnabledFor(logging.INFO)
        if not self._enabled:
            return
        # The fixed fields are written as bytes before the entry's own: no merged dict per line.
        fields = orjson.dumps(entry)
        rest = b"," + fields[1:] if len(fields) > 2 else b"}"
        line = b"".join((self._head, _MILLIS[int(now * 1000) % 1000], _FIXED, rest))
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self._pending.append(line)
                self.flush()
                return
        self._pending.append(line)

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        stream = self._stream or sys.stderr
        stream.write(b"\n".join(lines).decode() + "\n")
        stream.flush()
