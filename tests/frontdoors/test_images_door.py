"""The images front doors and their multipart reader: what is refused before anything is held,
and an edit's form read back into the canonical request (files unread, fields typed)."""

from __future__ import annotations

import json

import pytest

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.multipart import MAX_PARTS, parse_parts
from nemorouter.frontdoors.openai_images import parse_edit, parse_generation
from nemorouter.providers.canonical import ImageFile
from nemorouter.providers.images_wire import image_edits_request, images_request, multipart
from nemorouter.providers.types import Upstream

PNG = b"\x89PNG\r\n\x1a\nnot really an image, but bytes passed on unread\r\n--"


def form(fields: dict[str, object], files: tuple[ImageFile, ...]) -> tuple[bytes, bytes]:
    body, content_type = multipart(fields, files)
    return body, content_type.encode()


def test_a_generation_body_is_checked_and_defaults_to_dall_e_2() -> None:
    request = parse_generation(b'{"prompt": "a red fox", "n": 3, "size": "512x512"}')
    assert request.model_ids == ["openai/dall-e-2"] and request.n == 3 and not request.edit
    assert request.body["size"] == "512x512"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 1}',
        b'{"prompt": "   "}',
        b'{"prompt": "x", "n": 0}',
        b'{"prompt": "x", "n": 11}',
        b'{"prompt": "x", "n": 2.0}',
        b'{"prompt": "x", "n": true}',
        b'{"prompt": "x", "n": "2"}',
        b'{"prompt": "x", "size": 1024}',
        b'{"prompt": "x", "response_format": "png"}',
        b'{"prompt": "x", "stream": true}',
        b'{"prompt": "x", "model": 7}',
        b"not json",
    ],
)
def test_bad_generations_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_generation(raw)


def test_an_edit_form_becomes_fields_and_files_in_order() -> None:
    files = (
        ImageFile("image[]", "a.png", "image/png", PNG),
        ImageFile("image[]", 'b "quoted".png', "image/png", b"second"),
        ImageFile("mask", "m.png", "image/png", b"mask"),
    )
    raw, content_type = form({"prompt": "add a hat", "model": "openai/gpt-image-1", "n": 2}, files)
    request = parse_edit(raw, content_type)
    assert request.edit and request.n == 2 and request.body["n"] == 2
    assert request.body["prompt"] == "add a hat" and request.model_ids == ["openai/gpt-image-1"]
    assert request.files == files


@pytest.mark.parametrize(
    ("fields", "files"),
    [
        ({"prompt": "x"}, ()),  # no image
        ({"prompt": "x"}, (ImageFile("mask", "m.png", "image/png", b"m"),)),  # a mask alone
        ({"prompt": "x"}, (ImageFile("picture", "a.png", "image/png", b"a"),)),  # unknown file field
        ({"prompt": "x"}, (ImageFile("image", "a.png", "image/png", b""),)),  # an empty file
        ({"prompt": "x"}, tuple(ImageFile("image[]", f"{i}.png", "image/png", b"a") for i in range(17))),
        (
            {"prompt": "x"},
            (
                ImageFile("image", "a.png", "image/png", b"a"),
                ImageFile("mask", "m.png", "image/png", b"m"),
                ImageFile("mask", "n.png", "image/png", b"n"),
            ),
        ),
        ({"prompt": "x", "n": "two"}, (ImageFile("image", "a.png", "image/png", b"a"),)),
        ({"prompt": "x", "n": "50"}, (ImageFile("image", "a.png", "image/png", b"a"),)),
        ({"prompt": "x", "stream": "true"}, (ImageFile("image", "a.png", "image/png", b"a"),)),
        ({"prompt": "x", "models": "a,b"}, (ImageFile("image", "a.png", "image/png", b"a"),)),
        ({"n": "1"}, (ImageFile("image", "a.png", "image/png", b"a"),)),
    ],
)
def test_bad_edit_forms_are_refused(fields: dict[str, object], files: tuple[ImageFile, ...]) -> None:
    raw, content_type = form(fields, files)
    with pytest.raises(InvalidRequest):
        parse_edit(raw, content_type)


def test_malformed_multipart_is_refused() -> None:
    raw, content_type = form({"prompt": "x"}, (ImageFile("image", "a.png", "image/png", PNG),))
    for body, kind in [
        (raw[:-12], content_type),  # cut before the closing boundary
        (b"garbage without a boundary", content_type),
        (raw, b"application/json"),
        (raw, b"multipart/form-data"),  # no boundary
        (raw, None),
        (raw.replace(b"form-data; name", b"form-data; nom"), content_type),
    ]:
        with pytest.raises(InvalidRequest):
            parse_parts(body, kind)
    many, many_type = form({f"f{i}": "v" for i in range(MAX_PARTS + 1)}, ())
    with pytest.raises(InvalidRequest):
        parse_parts(many, many_type)
    twice = raw.replace(b'name="prompt"', b'name="n"')
    with pytest.raises(InvalidRequest):
        parse_edit(twice + b"", content_type)


def test_the_upstream_requests_carry_the_upstream_model_and_no_gateway_fields() -> None:
    upstream = Upstream("gpt-image-1", "http://127.0.0.1:9/v1/", "sk-secret")
    generation = images_request(
        {"model": "openai/gpt-image-1", "models": ["x"], "provider": {}, "prompt": "p", "n": 2}, upstream
    )
    assert generation.url == "http://127.0.0.1:9/v1/images/generations"
    assert json.loads(generation.body) == {"prompt": "p", "n": 2, "model": "gpt-image-1"}
    files = (ImageFile("image[]", "a.png", "image/png", PNG), ImageFile("mask", "m.png", "image/png", b"m"))
    edit = image_edits_request(
        {"model": "openai/gpt-image-1", "prompt": "p", "n": 2, "files": files}, upstream
    )
    assert edit.url == "http://127.0.0.1:9/v1/images/edits"
    assert edit.headers["Authorization"] == "Bearer sk-secret"
    parts = parse_parts(edit.body, edit.headers["Content-Type"].encode())
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("model", None, b"gpt-image-1"),
        ("prompt", None, b"p"),
        ("n", None, b"2"),
        ("image[]", "a.png", PNG),
        ("mask", "m.png", b"m"),
    ]
    # The same request builds the same bytes (no random boundary: adapters are pure).
    again = image_edits_request({"model": "any", "prompt": "p", "n": 2, "files": files}, upstream)
    assert again.body == edit.body
