"""A multipart/form-data body (RFC 7578) read whole into its parts, with python-multipart (the
parser Starlette itself uses): the one reader of every form a front door takes (image edits,
audio uploads). The body was already read within `NEMO_MAX_BODY_BYTES` (web/body.py).

Everything about it is untrusted: the boundary, the parts' headers and names, their number. A
body that is not a complete, well-formed form is a 400, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from nemorouter.errors import InvalidRequest

MAX_PARTS = 64  # OpenAI's edits take up to 16 images, a mask and a dozen fields; audio forms ten or so


@dataclass(slots=True)
class Part:
    """One part: its field name, file name (None for a text field), content type and bytes."""

    name: str
    filename: str | None
    content_type: str
    data: bytes = b""
    chunks: list[bytes] = field(default_factory=list)


def boundary_of(content_type: bytes | None) -> bytes:
    """The boundary of a multipart/form-data content type; a 400 for any other type."""
    if content_type is None:
        raise InvalidRequest("the body must be multipart/form-data (no Content-Type was sent)")
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind.lower() != b"multipart/form-data" or not boundary:
        raise InvalidRequest("the body must be multipart/form-data with a boundary")
    return boundary


def parse_parts(body: bytes, content_type: bytes | None) -> list[Part]:
    """The parts of a multipart/form-data body, in order."""
    boundary = boundary_of(content_type)
    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    name: list[bytes] = []
    value: list[bytes] = []
    ended: list[bool] = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.append(data[start:end])

    def on_header_end() -> None:
        headers[b"".join(name).strip().lower()] = b"".join(value).strip()
        name.clear()
        value.clear()

    def on_headers_finished() -> None:
        kind, params = parse_options_header(headers.get(b"content-disposition"))
        field_name = params.get(b"name")
        if kind != b"form-data" or field_name is None:
            raise InvalidRequest("a form part has no name")
        if len(parts) >= MAX_PARTS:
            raise InvalidRequest(f"the form has more than {MAX_PARTS} parts")
        filename = params.get(b"filename")
        content_type = headers.get(b"content-type", b"application/octet-stream")
        parts.append(
            Part(
                field_name.decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"),
                content_type.decode("latin-1"),
            )
        )
        headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    def on_end() -> None:
        ended.append(True)

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except InvalidRequest:
        raise
    except Exception:  # the library's parse errors, and whatever a hostile body provokes in it
        raise InvalidRequest("the multipart/form-data body is malformed") from None
    if not ended:
        raise InvalidRequest("the multipart/form-data body is incomplete (no closing boundary)")
    for part in parts:
        part.data = b"".join(part.chunks)
        part.chunks = []
    return parts
