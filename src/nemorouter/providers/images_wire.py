"""OpenAI's Images API on the OpenAI-wire kinds: `POST {base_url}/images/generations` (JSON) and
`POST {base_url}/images/edits` (multipart/form-data, the edit's files passed on as sent).

The answer, `{created, data: [{url | b64_json, revised_prompt?}], usage?}`, is read as
untrusted input: every item must carry an image. GPT Image models report token usage,
`{input_tokens, output_tokens, input_tokens_details: {text_tokens, image_tokens}}`; it becomes
our `Usage` with the text part of the input as `prompt_tokens`, the image tokens generated as
`completion_tokens`, and the input image tokens as `units` (billed at the model's
`image_input_token` rate: OpenAI prices them apart from text). DALL·E answers carry no usage:
the gateway bills them per image (service/images.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from nemorouter.money import Usage
from nemorouter.providers.canonical import ImageFile
from nemorouter.providers.counts import count, lenient
from nemorouter.providers.openai_wire import GATEWAY_FIELDS
from nemorouter.providers.types import Completion, Upstream, UpstreamRequest

# Fields of the answer besides `data` and `usage` that pass back to the client as they came
# (GPT Image models name what they made: background, output_format, quality, size).
_ECHOED = ("background", "output_format", "quality", "size")


def _url(upstream: Upstream, path: str) -> str:
    return upstream.base_url.rstrip("/") + path


def images_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k != "files"}
    out["model"] = upstream.model
    headers = {"Authorization": f"Bearer {upstream.secret}", "Content-Type": "application/json"}
    return UpstreamRequest(_url(upstream, "/images/generations"), headers, orjson.dumps(out))


def _text(value: Any) -> str:
    """A form field's value as text (the form carries no types: OpenAI reads `n=2` as 2)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _quoted(value: str) -> str:
    """A Content-Disposition parameter (RFC 7578 4.2: quote and backslash escaped, no line breaks)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def multipart(fields: dict[str, Any], files: tuple[ImageFile, ...]) -> tuple[bytes, str]:
    """A multipart/form-data body of `fields` (text) then `files`, and its content type. The
    boundary is drawn from the content (no randomness: the adapter stays pure) and checked
    absent from it."""
    texts = [(name, _text(value).encode()) for name, value in fields.items() if value is not None]
    digest = hashlib.sha256()
    for _, data in texts:
        digest.update(data)
    for file in files:
        digest.update(file.data)
    boundary = "nemo-" + digest.hexdigest()[:32]
    while any(boundary.encode() in data for _, data in texts) or any(
        boundary.encode() in f.data for f in files
    ):
        boundary += "x"
    parts: list[bytes] = []
    for name, data in texts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
        parts += [head.encode(), data, b"\r\n"]
    for file in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(file.field)}"; '
            f'filename="{_quoted(file.filename)}"\r\nContent-Type: {file.content_type}\r\n\r\n'
        )
        parts += [head.encode(), file.data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def image_edits_request(body: dict[str, Any], upstream: Upstream) -> UpstreamRequest:
    files: tuple[ImageFile, ...] = body["files"]
    fields = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and k != "files"}
    fields["model"] = upstream.model
    payload, content_type = multipart(fields, files)
    headers = {"Authorization": f"Bearer {upstream.secret}", "Content-Type": content_type}
    return UpstreamRequest(_url(upstream, "/images/edits"), headers, payload)


def _image(item: Any) -> dict[str, Any]:
    """One generated image, checked: a URL or base64 data (the provider is untrusted)."""
    if not isinstance(item, dict):
        raise ValueError("an image item that is not an object")
    out: dict[str, Any] = {}
    for name in ("url", "b64_json"):
        if isinstance(item.get(name), str) and item[name]:
            out[name] = item[name]
    if not out:
        raise ValueError("an image item without url or b64_json")
    if isinstance(item.get("revised_prompt"), str):
        out["revised_prompt"] = item["revised_prompt"]
    return out


def images_response(data: Any) -> Completion:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("upstream answered 200 without images")
    body: dict[str, Any] = {"data": [_image(item) for item in data["data"]]}
    created = data.get("created")
    if type(created) is int:
        body["created"] = created
    for name in _ECHOED:
        if isinstance(data.get(name), str):
            body[name] = data[name]
    raw = data.get("usage")
    usage = _usage(raw) if isinstance(raw, dict) else None
    return Completion(
        body=body, usage=usage, finish_reason=None, raw_usage=raw if isinstance(raw, dict) else None
    )


@lenient
def _usage(raw: dict[str, Any]) -> Usage:
    details = raw.get("input_tokens_details")
    if details is not None and not isinstance(details, dict):
        raise ValueError("input_tokens_details is not an object")
    total_in = count(raw.get("input_tokens"))
    images = count((details or {}).get("image_tokens"))
    if images > total_in:
        raise ValueError("more input image tokens than input tokens")
    # The text part is the input less its image part (`text_tokens` is not read): a report whose
    # details do not add up is billed for its whole input all the same.
    return Usage(
        prompt_tokens=total_in - images, completion_tokens=count(raw.get("output_tokens")), units=images
    )
