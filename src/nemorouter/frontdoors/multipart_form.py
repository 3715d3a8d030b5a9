"""A `multipart/form-data` body read whole into its fields and one file, with python-multipart's
parser (the body is already within `NEMO_MAX_BODY_BYTES`: app/fast.py's reader enforces it).

Everything about it is untrusted: the boundary, the parts' headers and names, their number and
sizes. A body that is not a complete, well-formed form, has no `file` part or more than one, or
a field that is not UTF-8 text is a 400 here, before anything is held or sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from python_multipart.multipart import MultipartParser, parse_options_header

from nemorouter.errors import InvalidRequest
from nemorouter.providers.canonical import AudioUpload

if TYPE_CHECKING:  # the library declares its callbacks' type for checkers only
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 64  # OpenAI's forms have about ten fields; a repeated `name[]` a few values each
MAX_FIELD_BYTES = 64 * 1024  # a text field (the `prompt` is at most 224 tokens at OpenAI)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)
    size: int = 0


class _Collector:
    """The parser's callbacks: parts gathered, each with its headers and data."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.name = b""
        self.value = b""
        self.ended = False
        self.problem: str | None = None

    def part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            self.problem = f"the form has more than {MAX_PARTS} parts"
        self.parts.append(_Part())

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.parts[-1].headers[self.name.decode("latin-1").strip().lower()] = self.value.strip()
        self.name = self.value = b""

    def part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.data.append(data[start:end])
        part.size += end - start

    def end(self) -> None:
        self.ended = True

    def callbacks(self) -> MultipartCallbacks:
        return cast(
            "MultipartCallbacks",
            {
                "on_part_begin": self.part_begin,
                "on_header_field": self.header_field,
                "on_header_value": self.header_value,
                "on_header_end": self.header_end,
                "on_part_data": self.part_data,
                "on_end": self.end,
            },
        )


def _boundary(content_type: bytes | None) -> bytes:
    if content_type is None:
        raise InvalidRequest("the body must be multipart/form-data (no Content-Type was sent)")
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind.lower() != b"multipart/form-data" or not boundary:
        raise InvalidRequest("the body must be multipart/form-data with a boundary")
    return boundary


def parse_form(raw: bytes, content_type: bytes | None) -> tuple[dict[str, Any], AudioUpload]:
    """The form's text fields (a repeated field, or one named `name[]`, as a list under `name`)
    and its one `file` part."""
    collector = _Collector()
    try:
        parser = MultipartParser(_boundary(content_type), collector.callbacks())
        parser.write(raw)
        parser.finalize()
    except InvalidRequest:
        raise
    except Exception:  # the library's parse errors, and whatever a hostile body provokes in it
        raise InvalidRequest("the multipart/form-data body is malformed") from None
    if collector.problem is not None:
        raise InvalidRequest(collector.problem)
    if not collector.ended:
        raise InvalidRequest("the multipart/form-data body is incomplete (no closing boundary)")
    fields: dict[str, Any] = {}
    upload: AudioUpload | None = None
    for part in collector.parts:
        _, options = parse_options_header(part.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise InvalidRequest("a form part has no name")
        if name == "file":
            if upload is not None:
                raise InvalidRequest("the form must carry exactly one `file`")
            filename = options.get(b"filename", b"audio").decode("utf-8", "replace") or "audio"
            kind = part.headers.get("content-type", b"application/octet-stream").decode("latin-1")
            upload = AudioUpload(filename, kind, b"".join(part.data))
            continue
        if part.size > MAX_FIELD_BYTES:
            raise InvalidRequest(f"the form field `{name}` is over {MAX_FIELD_BYTES} bytes")
        try:
            value = b"".join(part.data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"the form field `{name}` is not UTF-8 text") from None
        key = name.removesuffix("[]")
        if key == "file":
            raise InvalidRequest("the form must carry exactly one `file`")
        if name.endswith("[]") or key in fields:
            previous = fields.get(key, [])
            fields[key] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            fields[key] = value
    if upload is None or not upload.data:
        raise InvalidRequest("the form must carry a non-empty `file`")
    return fields, upload
