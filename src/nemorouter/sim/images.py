"""Deterministic images in OpenAI's shape: ``POST /v1/images/generations`` (JSON) and
``POST /v1/images/edits`` (multipart/form-data: ``image`` or ``image[]`` files, ``mask``).

Strict per model, as OpenAI is: DALL·E 2 (256x256, 512x512, 1024x1024; standard; n 1-10;
edits), DALL·E 3 (1024x1024, 1792x1024, 1024x1792; standard or hd; n 1; no edits) and
GPT Image (``gpt-image-1``: 1024x1024, 1536x1024, 1024x1536 or auto; low, medium, high or auto;
n 1-10; edits; no ``response_format``: always base64). An image is a 1x1 PNG whose colour comes
from the prompt, as ``b64_json`` or as a URL. DALL·E answers carry no usage; GPT Image answers
carry OpenAI's token usage, exact: text tokens of the prompt, ``INPUT_IMAGE_TOKENS`` per image
file of an edit (a mask is not counted), and per image made the output tokens OpenAI publishes
for its size and quality (``auto`` makes a 1024x1024 of medium quality). Fault directives
(``[sim:...]`` in the prompt, or the ``x-sim`` header) act as on every route, ``report_output``,
``report_prompt``, ``bad_usage``, ``usage_scale`` and ``no_usage`` on the usage.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zlib
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.faults import Faults, collect_faults, dumps, sleep_ms, total_count
from nemorouter.sim.openai_wire import JSON, bad_key_response, error_response, fault_response, prelude
from nemorouter.sim.state import SimState, bearer_key
from nemorouter.sim.tokens import count_text_tokens

INPUT_IMAGE_TOKENS = 194  # each image file of a GPT Image edit
# OpenAI's output tokens per GPT Image image (platform.openai.com/docs/guides/image-generation).
OUTPUT_TOKENS = {
    ("1024x1024", "low"): 272,
    ("1024x1024", "medium"): 1056,
    ("1024x1024", "high"): 4160,
    ("1024x1536", "low"): 408,
    ("1024x1536", "medium"): 1584,
    ("1024x1536", "high"): 6240,
    ("1536x1024", "low"): 408,
    ("1536x1024", "medium"): 1584,
    ("1536x1024", "high"): 6240,
}
# model -> (sizes, qualities, default quality, most images per request, takes edits)
MODELS: dict[str, tuple[frozenset[str], frozenset[str], str, int, bool]] = {
    "dall-e-2": (
        frozenset({"256x256", "512x512", "1024x1024"}),
        frozenset({"standard"}),
        "standard",
        10,
        True,
    ),
    "dall-e-3": (
        frozenset({"1024x1024", "1792x1024", "1024x1792"}),
        frozenset({"standard", "hd"}),
        "standard",
        1,
        False,
    ),
    "gpt-image-1": (
        frozenset({"1024x1024", "1536x1024", "1024x1536", "auto"}),
        frozenset({"low", "medium", "high", "auto"}),
        "auto",
        10,
        True,
    ),
}


class ImageError(Exception):
    """A request OpenAI would refuse with 400 (``param`` names the field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def png(seed: str) -> bytes:
    """A valid 1x1 RGB PNG whose colour is drawn from ``seed``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rgb = hashlib.sha256(seed.encode()).digest()[:3]
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" + rgb))
        + chunk(b"IEND", b"")
    )


def _int(value: Any, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if type(value) is int:
        return value
    raise ImageError(f"Invalid type for '{name}': expected an integer.", name)


def images_body(fields: dict[str, Any], image_files: int, faults: Faults, edit: bool) -> dict[str, Any]:
    """The answer to a generation (``image_files`` 0) or an edit; raises ``ImageError``."""
    model = fields.get("model") or "dall-e-2"
    if model not in MODELS:
        raise ImageError(f"Invalid model {model!r}.", "model")
    sizes, qualities, default_quality, max_n, edits = MODELS[model]
    if edit and not edits:
        raise ImageError(f"{model} does not support image edits.", "model")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ImageError("'prompt' is required.", "prompt")
    n = _int(fields.get("n", 1), "n")
    if not 1 <= n <= max_n:
        raise ImageError(f"'n' must be between 1 and {max_n} for {model}.", "n")
    size = fields.get("size") or ("auto" if model == "gpt-image-1" else "1024x1024")
    if size not in sizes:
        raise ImageError(f"Invalid size {size!r} for {model}; supported: {', '.join(sorted(sizes))}.", "size")
    quality = fields.get("quality") or default_quality
    if quality not in qualities:
        raise ImageError(f"Invalid quality {quality!r} for {model}.", "quality")
    response_format = fields.get("response_format")
    if model == "gpt-image-1" and response_format is not None:
        raise ImageError("Unknown parameter: 'response_format'.", "response_format")
    if response_format not in (None, "url", "b64_json"):
        raise ImageError(f"Invalid response_format {response_format!r}.", "response_format")
    as_url = response_format == "url" or (response_format is None and model != "gpt-image-1")
    data = []
    for i in range(n):
        seed = f"{model}|{prompt}|{size}|{quality}|{i}"
        item: dict[str, Any] = (
            {"url": f"https://images.sim.invalid/{hashlib.sha256(seed.encode()).hexdigest()[:24]}.png"}
            if as_url
            else {"b64_json": base64.b64encode(png(seed)).decode()}
        )
        if model == "dall-e-3":
            item["revised_prompt"] = f"A faithful rendering of: {prompt}"
        data.append(item)
    out: dict[str, Any] = {"created": int(time.time()), "data": data}
    if model == "gpt-image-1":
        made_size = "1024x1024" if size == "auto" else size
        made_quality = "medium" if quality == "auto" else quality
        out.update(background="opaque", output_format="png", quality=made_quality, size=made_size)
        if not faults.no_usage:
            text, images_in = count_text_tokens(prompt), image_files * INPUT_IMAGE_TOKENS
            output = faults.output_count(n * OUTPUT_TOKENS[(made_size, made_quality)])
            input_tokens = faults.prompt_count(text + images_in)
            out["usage"] = {
                "input_tokens": input_tokens,
                "input_tokens_details": {"text_tokens": text, "image_tokens": images_in},
                "output_tokens": output,
                "total_tokens": total_count([input_tokens, output], text + images_in + output),
            }
    return out


def _answer(fields: dict[str, Any], image_files: int, faults: Faults, edit: bool) -> Response:
    try:
        payload = dumps(images_body(fields, image_files, faults, edit))
    except ImageError as exc:
        return error_response(400, str(exc), "invalid_request_error", param=exc.param)
    if faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON)


async def generations(request: Request) -> Response:
    pre = await prelude(request, lambda b: [b["prompt"]] if isinstance(b.get("prompt"), str) else [])
    if pre.early is not None:
        return pre.early
    return _answer(pre.body, 0, pre.faults, edit=False)


async def edits(request: Request) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    fields: dict[str, Any] = {}
    files: dict[str, list[dict[str, Any]]] = {}
    try:
        form = await request.form(max_files=64, max_fields=64)
    except Exception:  # Starlette's parser refuses it: so would OpenAI
        form = None
    if form is not None:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                files.setdefault(name, []).append(
                    {"filename": value.filename, "content_type": value.content_type, "bytes": len(data)}
                )
            else:
                fields[name] = value
    state.record(request, raw, {**fields, "files": files} if form is not None else None)
    key = bearer_key(request.headers.get("authorization"))
    if not state.key_accepted(key):
        return bad_key_response()
    if form is None:
        return error_response(400, "Could not parse multipart form.", "invalid_request_error")
    faults = collect_faults(
        request.headers.get("x-sim"), [v for v in [fields.get("prompt")] if isinstance(v, str)]
    )
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return bad_key_response()
    if faults.status is not None:
        return fault_response(faults)
    images = files.get("image", []) + files.get("image[]", [])
    if not images:
        return error_response(400, "'image' is required.", "invalid_request_error", param="image")
    if len(files.get("mask", [])) > 1 or set(files) - {"image", "image[]", "mask"}:
        return error_response(400, "Unexpected file fields.", "invalid_request_error")
    return _answer(fields, len(images), faults, edit=True)


def routes() -> list[Route]:
    return [
        Route("/v1/images/generations", generations, methods=["POST"]),
        Route("/v1/images/edits", edits, methods=["POST"]),
    ]
