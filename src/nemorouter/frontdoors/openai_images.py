"""The front doors of OpenAI's Images API: `POST /v1/images/generations` (a JSON body) and
`POST /v1/images/edits` (multipart/form-data: `image` or `image[]` files, an optional `mask`
file, and the same fields as text) -> the canonical images request.

Checked here, before anything is held or sent: `prompt` a non-empty string; `n` an integer
from 1 to 10 (OpenAI's own bounds; DALL·E 3's 1 is checked against the model by the flow);
`size`, `quality`, `response_format` strings; an edit's 1 to 16 images and at most one mask.
`model` is optional, as at OpenAI (DALL·E 2 without one). Images are not streamed here:
`stream: true` is refused. Every other field passes through for the provider to judge.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.multipart import parse_parts
from nemorouter.frontdoors.openai_chat import model_ids, provider_prefs
from nemorouter.providers.canonical import ImageFile, ImageRequest
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.service.images import serve_images
from nemorouter.store.records import ApiKey

DEFAULT_MODEL = "openai/dall-e-2"  # OpenAI's default image model
MAX_N = 10
MAX_IMAGES = 16  # GPT Image's limit of images per edit (DALL·E 2 takes one)
_INTEGERS = ("n", "output_compression", "partial_images")  # form fields OpenAI reads as integers
_TEXTS = ("size", "quality", "response_format", "background", "output_format", "style", "user")
_CONTENT_TYPE = b"content-type"


def _checked(body: dict[str, Any], files: tuple[ImageFile, ...] = ()) -> ImageRequest:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("`prompt` must be a non-empty string")
    n = body.get("n", 1)
    if type(n) is not int or not 1 <= n <= MAX_N:
        raise InvalidRequest(f"`n` must be an integer from 1 to {MAX_N}")
    for name in _TEXTS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"`{name}` must be a string")
    if body.get("response_format") not in (None, "url", "b64_json"):
        raise InvalidRequest('`response_format` must be "url" or "b64_json"')
    if body.get("stream") not in (None, False):
        raise InvalidRequest("streamed images are not supported; leave `stream` unset")
    body.pop("stream", None)
    if body.get("model") is None and not body.get("models"):
        body["model"] = DEFAULT_MODEL
    return ImageRequest(body, model_ids(body), n, files, prefs=provider_prefs(body))


def parse_generation(raw: bytes) -> ImageRequest:
    return _checked(json_object(raw))


def _form_value(name: str, data: bytes) -> Any:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InvalidRequest(f"form field `{name}` is not UTF-8 text") from None
    if name in _INTEGERS:
        try:
            return int(text.strip())
        except ValueError:
            raise InvalidRequest(f"form field `{name}` must be an integer") from None
    if name == "stream":
        return text.strip().lower() == "true"
    return text


def parse_edit(raw: bytes, content_type: bytes | None) -> ImageRequest:
    body: dict[str, Any] = {}
    files: list[ImageFile] = []
    for part in parse_parts(raw, content_type):
        if part.filename is not None:
            if part.name not in ("image", "image[]", "mask"):
                raise InvalidRequest(
                    f"unexpected file field `{part.name}` (images go in `image`, the mask in `mask`)"
                )
            if not part.data:
                raise InvalidRequest(f"the file in `{part.name}` is empty")
            files.append(ImageFile(part.name, part.filename or "image.png", part.content_type, part.data))
        elif part.name in ("models", "provider"):
            raise InvalidRequest(f"`{part.name}` is not taken by an edit's form; name one `model`")
        elif part.name in body:
            raise InvalidRequest(f"form field `{part.name}` is given twice")
        else:
            body[part.name] = _form_value(part.name, part.data)
    images = [f for f in files if f.field != "mask"]
    if not 0 < len(images) <= MAX_IMAGES:
        raise InvalidRequest(f"an edit takes 1 to {MAX_IMAGES} image files in `image`")
    if len(files) - len(images) > 1:
        raise InvalidRequest("an edit takes at most one `mask` file")
    return _checked(body, tuple(files))


async def generations(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    return await serve_images(gateway, key, parse_generation(raw))


async def edits(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    raise InvalidRequest("the body must be multipart/form-data")  # served with its headers, below


async def edits_with_headers(
    gateway: Gateway, key: ApiKey, raw: bytes, headers: dict[bytes, bytes]
) -> JsonReply | StreamReply:
    return await serve_images(gateway, key, parse_edit(raw, headers.get(_CONTENT_TYPE)))


IMAGES = FrontDoor("/v1/images/generations", generations)
IMAGE_EDITS = FrontDoor(
    "/v1/images/edits", edits, reads=frozenset({_CONTENT_TYPE}), serve_with_headers=edits_with_headers
)
