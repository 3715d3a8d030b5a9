"""The front door of OpenAI's Moderations API (`POST /v1/moderations`): a body -> the canonical
moderation request.

`input` is what OpenAI takes: a string, a list of strings, or a list of multi-modal parts
(`{"type": "text", "text"}` and `{"type": "image_url", "image_url": {"url"}}`); anything else is a
clear 400 here, never sent. `model` is optional, as at OpenAI: without one the request asks for
`DEFAULT_MODEL`, the catalog id of OpenAI's current moderation model. OpenAI's answer is already
this format, so it goes back as it is (with our `usage`, cost and request id added).
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.openai_chat import model_ids, provider_prefs
from nemorouter.providers.canonical import ModerationRequest
from nemorouter.service.gateway import Gateway, JsonReply, StreamReply
from nemorouter.store.records import ApiKey

DEFAULT_MODEL = "openai/omni-moderation-latest"
MAX_INPUTS = 2048  # as many inputs as one embeddings request may carry


def _part_ok(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    if part.get("type") == "text":
        return isinstance(part.get("text"), str) and part["text"] != ""
    if part.get("type") == "image_url":
        image = part.get("image_url")
        return isinstance(image, dict) and isinstance(image.get("url"), str) and image["url"] != ""
    return False


def check_input(value: Any) -> None:
    """A 400 unless `input` is a non-empty string, list of strings, or list of known parts."""
    ok = isinstance(value, str) and value != ""
    if isinstance(value, list) and 0 < len(value) <= MAX_INPUTS:
        ok = all(isinstance(v, str) and v for v in value) or all(_part_ok(v) for v in value)
    if not ok:
        raise InvalidRequest(
            "`input` must be a non-empty string, a list of up to 2048 non-empty strings, or a list of "
            '{"type": "text", "text"} and {"type": "image_url", "image_url": {"url"}} parts'
        )


def parse_moderation(raw: bytes) -> ModerationRequest:
    body = json_object(raw)
    check_input(body.get("input"))
    if body.get("model") is None and not body.get("models"):
        body["model"] = DEFAULT_MODEL
    return ModerationRequest(body, model_ids(body), prefs=provider_prefs(body))


async def moderations(gateway: Gateway, key: ApiKey, raw: bytes) -> JsonReply | StreamReply:
    return await gateway.moderations(key, parse_moderation(raw))


MODERATIONS = FrontDoor("/v1/moderations", moderations)
