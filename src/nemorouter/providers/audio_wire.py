"""Speech and transcription on the OpenAI-wire kinds (openai, openai-compatible: Groq's Whisper).

- `POST {base_url}/audio/speech`: a JSON body in, the audio's bytes out (`response_format`
  mp3 by default, or opus/aac/flac/wav/pcm). The answer carries no usage: OpenAI bills the
  input's characters, which the gateway counted before sending (service/media.py).
- `POST {base_url}/audio/transcriptions` and `/audio/translations`: a multipart form in (the
  file and the fields, rebuilt here with the deployment's model), and an answer in the
  `response_format` asked for: JSON (`json`, `verbose_json`) or text (`text`, `srt`, `vtt`).
  The seconds billed are read where the provider reports them: OpenAI's
  `usage: {"type": "duration", "seconds"}`, or verbose_json's `duration`.

Both parsers take the answer's raw bytes and content type (engine/dispatch.py) and return a
`Completion` whose body is `{"content": bytes, "content_type": str}` (plus `"json"`, the parsed
object, for a JSON transcription): the bytes go back to the client as they came.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.money.usage import PLAUSIBLE_TOKENS
from nemorouter.providers.canonical import AudioUpload
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.types import Completion, Upstream, UpstreamRequest

# The content type of each speech format, for an answer that names none (OpenAI's own).
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def _media_type(content_type: str, default: str) -> str:
    """The answer's content type as the client will get it: the provider's when it is a plain
    header value (untrusted: no control characters, ASCII only), else `default`."""
    ok = content_type and content_type.isascii() and content_type.isprintable() and len(content_type) <= 200
    return content_type if ok else default


def _headers(upstream: Upstream, content_type: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {upstream.secret}", "Content-Type": content_type}


def speech_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    out["model"] = upstream.model
    url = upstream.base_url.rstrip("/") + "/audio/speech"
    return UpstreamRequest(url, _headers(upstream, "application/json"), orjson.dumps(out))


def speech_response(raw: bytes, content_type: str) -> Completion:
    """The audio as the provider sent it. A 200 that is JSON (or empty) is no audio: unreadable."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not raw or media == "application/json" or media.startswith("text/"):
        raise ValueError("upstream answered 200 without audio")
    body = {"content": raw, "content_type": _media_type(content_type, "application/octet-stream")}
    return Completion(body=body, usage=None, finish_reason=None)


def _form_value(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


def _quoted(text: str) -> str:
    """A form-data parameter value, quoted (a quote or line break would end it: escaped as the
    WHATWG HTML standard encodes names and filenames)."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_form(fields: dict[str, Any], upload: AudioUpload) -> tuple[bytes, str]:
    """The form's body and its content type. The boundary is drawn from the content itself
    (pure: no clock, no randomness) and checked to occur in no part."""
    parts: list[tuple[bytes, bytes]] = []
    for name, value in fields.items():
        key = name if not isinstance(value, list) or name.endswith("[]") else name + "[]"
        for item in _form_value(value):
            head = f'Content-Disposition: form-data; name="{_quoted(key)}"\r\n'
            parts.append((head.encode(), item.encode()))
    head = (
        f'Content-Disposition: form-data; name="file"; filename="{_quoted(upload.filename)}"\r\n'
        f"Content-Type: {upload.content_type}\r\n"
    )
    parts.append((head.encode(), upload.data))
    seed = hashlib.sha256(upload.data).hexdigest()
    salt = 0
    while True:
        boundary = f"nemo-{seed[:24]}-{salt}"
        marker = boundary.encode()
        if not any(marker in head or marker in data for head, data in parts):
            break
        salt += 1
    chunks = [b"--" + marker + b"\r\n" + head + b"\r\n" + data + b"\r\n" for head, data in parts]
    body = b"".join(chunks) + b"--" + marker + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


def _form_request(body: dict[str, Any], upstream: Upstream, path: str) -> UpstreamRequest:
    fields = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k != "file" and v is not None}
    fields["model"] = upstream.model
    payload, content_type = multipart_form(fields, body["file"])
    url = upstream.base_url.rstrip("/") + path
    return UpstreamRequest(url, _headers(upstream, content_type), payload)


def transcription_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    return _form_request(body, upstream, "/audio/transcriptions")


def translation_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    return _form_request(body, upstream, "/audio/translations")


def reported_seconds(data: Any) -> int | None:
    """The whole seconds (rounded up) a JSON transcription reports: `usage.seconds` of a
    `duration` usage, else a verbose answer's `duration`; None when absent or impossible (a
    negative, non-finite or non-numeric value: the provider is untrusted)."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        value = usage.get("seconds")
    else:
        value = data.get("duration")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return min(math.ceil(value), PLAUSIBLE_TOKENS)  # more is a lie, and cut to the hold anyway


def transcription_response(raw: bytes, content_type: str) -> Completion:
    """A transcription in any format. A JSON answer must be an object with a string `text`."""
    media = content_type.split(";", 1)[0].strip().lower()
    body: dict[str, Any] = {
        "content": raw,
        "content_type": _media_type(content_type, "text/plain; charset=utf-8"),
    }
    if media != "application/json":
        return Completion(body=body, usage=None, finish_reason=None)
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError("upstream answered 200 without a transcription")
    body["json"] = data
    seconds = reported_seconds(data)
    raw_usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    if raw_usage is None and "duration" in data:
        raw_usage = {"duration": data["duration"]}
    usage = None if seconds is None else Usage(units=seconds)
    return Completion(body=body, usage=usage, finish_reason=None, raw_usage=raw_usage)
