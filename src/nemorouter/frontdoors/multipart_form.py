"""An audio upload's form: its text fields and its one `file`, read from the parts the shared
multipart reader gives (frontdoors/multipart.py: the boundary, the parts' headers, their
number). A form with no `file` part or more than one, or a field that is not UTF-8 text, is a
400 here, before anything is held or sent.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.multipart import MAX_PARTS, parse_parts
from nemorouter.providers.canonical import AudioUpload

__all__ = ["MAX_FIELD_BYTES", "MAX_PARTS", "parse_form"]

MAX_FIELD_BYTES = 64 * 1024  # a text field (the `prompt` is at most 224 tokens at OpenAI)


def parse_form(raw: bytes, content_type: bytes | None) -> tuple[dict[str, Any], AudioUpload]:
    """The form's text fields (a repeated field, or one named `name[]`, as a list under `name`)
    and its one `file` part."""
    fields: dict[str, Any] = {}
    upload: AudioUpload | None = None
    for part in parse_parts(raw, content_type):
        name = part.name
        if not name:
            raise InvalidRequest("a form part has no name")
        if name == "file":
            if upload is not None:
                raise InvalidRequest("the form must carry exactly one `file`")
            upload = AudioUpload(part.filename or "audio", part.content_type, part.data)
            continue
        if len(part.data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"the form field `{name}` is over {MAX_FIELD_BYTES} bytes")
        try:
            value = part.data.decode("utf-8")
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
