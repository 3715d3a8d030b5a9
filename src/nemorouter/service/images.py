"""The images flow (`/v1/images/generations` and `/edits`): resolve -> hold -> send -> settle.

Held and billed in the unit its models price (providers/image_bounds.py): `n` images of a
size/quality tier for DALL·E, tokens for GPT Image. The charge:

- per image: the images the provider returned (at most `n`) at the held tier's rate; an
  answer's token counts, if any, are not billed (such models price no tokens);
- per token: the provider's usage (text input, image output, input image tokens as units), cut
  to the hold; with no usage report, the held text bound, OpenAI's published tokens for the
  images returned, and the held input image tokens: never more than the hold.

Its own module so that the gateway's stays small; it uses the gateway's steps (admission,
dispatcher, settlement) as they are.
"""

from __future__ import annotations

import time
from typing import Any

from nemorouter import jsonx
from nemorouter.engine.dispatch import Operation
from nemorouter.errors import InvalidRequest
from nemorouter.money import Usage, format_usd
from nemorouter.providers.canonical import ImageRequest
from nemorouter.providers.image_bounds import ImageHold, UnpricedTier, output_tokens, plan
from nemorouter.providers.types import Completion
from nemorouter.service.gateway import Gateway, JsonReply
from nemorouter.store.records import ApiKey, Outcome

# OpenAI's rule: DALL·E 3 makes one image per request.
_ONE_IMAGE_MODELS = ("dall-e-3",)


async def serve_images(gateway: Gateway, key: ApiKey, request: ImageRequest) -> JsonReply:
    admission = gateway.admission
    operation = Operation.IMAGE_EDITS if request.edit else Operation.IMAGES
    routes = await admission.resolve(key, request.model_ids, "image")
    attempts = admission.candidates(routes, request.prefs)
    body, n = request.body, request.n
    if n > 1 and any(a.upstream.model.startswith(_ONE_IMAGE_MODELS) for a in attempts):
        raise InvalidRequest("`n` must be 1 for dall-e-3 (it makes one image per request)")
    try:
        hold = plan(
            [a.origin.prices for a in attempts],
            n,
            body.get("size"),
            body.get("quality"),
            body["prompt"],
            len(request.files),
        )
    except UnpricedTier as exc:
        raise InvalidRequest(str(exc)) from None
    body.update(hold.sent)
    if request.edit:
        body["files"] = request.files
    bound, max_output = hold.input_bound, hold.max_output
    held = (bound, max_output, n, bound // 4 + max_output, hold.unit, hold.units)
    call, target, completion = await gateway.send_held(key, routes, attempts, body, operation, *held)
    usage, raw_usage = _billed(hold, completion, n, body)
    outcome = Outcome(finish_reason=None, raw_usage=raw_usage)
    cost, charged = await gateway.settlement.settle(call, target, usage, "success", outcome)
    answer = completion.body
    answer.setdefault("created", int(time.time()))
    cost_text = format_usd(cost)
    answer["usage"] = {**_usage_view(hold, charged), "cost": jsonx.usd_literal(cost_text)}
    headers = {"x-nemo-request-id": call.id, "x-nemo-cost": cost_text}
    return JsonReply(jsonx.dumps(answer), headers)


def _billed(hold: ImageHold, completion: Completion, n: int, body: dict[str, Any]) -> tuple[Usage, Any]:
    """What to bill for this answer, and the usage record to keep beside it."""
    images = min(len(completion.body["data"]), n)
    reported, raw = completion.usage, completion.raw_usage
    if hold.per_image:
        return Usage(unit=hold.unit, units=images), {"images": images, **({"reported": raw} if raw else {})}
    if reported is not None:
        return Usage(
            prompt_tokens=reported.prompt_tokens,
            completion_tokens=reported.completion_tokens,
            unit=hold.unit,
            units=reported.units,
        ), raw
    # No (readable) report: the hold's own bounds, and the published tokens of what came back.
    made = images * output_tokens(body.get("size"), body.get("quality"))
    estimate = Usage(prompt_tokens=hold.input_bound, completion_tokens=made, unit=hold.unit, units=hold.units)
    return estimate, {"estimated": True, **({"reported": raw} if raw else {})}


def _usage_view(hold: ImageHold, usage: Usage) -> dict[str, Any]:
    """OpenAI's image usage shape (tokens; zero for a model billed per image) and our count of images."""
    text, images_in = usage.prompt_tokens, 0 if hold.per_image else usage.units
    view: dict[str, Any] = {
        "input_tokens": text + images_in,
        "input_tokens_details": {"text_tokens": text, "image_tokens": images_in},
        "output_tokens": usage.completion_tokens,
        "total_tokens": text + images_in + usage.completion_tokens,
    }
    if hold.per_image:
        view["images"] = usage.units
    return view
