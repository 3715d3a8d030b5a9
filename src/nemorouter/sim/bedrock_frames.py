"""AWS event-stream messages as Bedrock's ConverseStream sends them (the encoder botocore lacks).

A message is a prelude (total length, headers length, the prelude's CRC32), headers, the payload
and the CRC32 of everything before it; all integers big-endian. Header values here are strings
(type 7), as Bedrock's `:message-type`, `:event-type`, `:exception-type` and `:content-type` are.
Spec: "Event stream encoding" in the AWS Transcribe/S3 developer guides; botocore's
`eventstream.py` is the decoder it must satisfy.
"""

from __future__ import annotations

import binascii
import struct

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    return out


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message, CRCs included."""
    encoded = _headers(headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack("!I", binascii.crc32(body))


def event(event_type: str, payload: bytes) -> bytes:
    """An `event` message (`messageStart`, `contentBlockDelta`, `metadata`, ...)."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An `exception` message: a modeled error inside the stream (e.g. `throttlingException`)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, payload)
