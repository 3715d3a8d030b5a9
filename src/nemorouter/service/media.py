"""The flow of the audio APIs: speech (text in, audio out) and transcription or translation
(audio in, text out), priced per unit: resolve -> hold -> dispatch -> settle -> bytes.

- Speech is billed per input character (`unit` "character"): held and charged the input's
  characters, as counted by its front door. OpenAI's answer is audio and reports no count.
- Transcription is billed per second of audio (`unit` "second"): held for the file's duration
  read from the file (frontdoors/audio.py), or the dearest candidate vendor's minimum if more
  (Groq bills at least 10 seconds: providers/vendors.py); charged the seconds the provider
  reports (OpenAI's `usage.seconds`, verbose_json's `duration`), else the held seconds, at
  least the serving vendor's minimum, never more than held.

The answer goes back as the provider sent it, in its content type (audio; text, SRT or VTT);
a JSON transcription gets `usage.cost` added. Cost and request id travel in the headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemorouter import jsonx
from nemorouter.engine.dispatch import Operation
from nemorouter.money import Usage, format_usd
from nemorouter.providers.canonical import ProviderPrefs, SpeechRequest, TranscriptionRequest
from nemorouter.providers.types import Completion
from nemorouter.providers.vendors import min_billed_seconds
from nemorouter.service.admission import Call
from nemorouter.service.gateway import Gateway
from nemorouter.service.routing import Route, Target
from nemorouter.store.records import ApiKey

CHARACTER = "character"
SECOND = "second"


@dataclass(slots=True)
class BytesReply:
    """An answer that is not our JSON: its bytes as the provider sent them, and their type."""

    body: bytes
    content_type: str
    headers: dict[str, str]
    status: int = 200


def _vendor(target: Target) -> str | None:
    vendor = target.provider.config.get("vendor")
    return vendor if isinstance(vendor, str) else None


async def _answer(
    gateway: Gateway,
    key: ApiKey,
    routes: list[Route],
    body: dict[str, Any],
    prefs: ProviderPrefs | None,
    operation: Operation,
    unit: str,
    units: int,
) -> tuple[Call, Target, Completion]:
    """Hold `units` of `unit` at the dearest candidate's rate, send, and answer (unsettled)."""
    attempts = gateway.admission.candidates(routes, prefs)
    if unit == SECOND:  # a vendor with a minimum bills at least that, however short the audio
        units = max([units, *(min_billed_seconds(_vendor(a.origin)) for a in attempts)])
    return await gateway.send_held(key, routes, attempts, body, operation, 0, 0, 1, 1, unit, units)


def _reply(call: Call, cost: int, body: bytes, content_type: str) -> BytesReply:
    return BytesReply(body, content_type, {"x-nemo-request-id": call.id, "x-nemo-cost": format_usd(cost)})


async def speech(gateway: Gateway, key: ApiKey, request: SpeechRequest) -> BytesReply:
    routes = await gateway.admission.resolve(key, request.model_ids, "speech")
    characters = request.characters
    call, target, completion = await _answer(
        gateway, key, routes, request.body, request.prefs, Operation.SPEECH, CHARACTER, characters
    )
    # OpenAI bills every character of the input; its answer is the audio alone.
    completion.usage = Usage(units=characters)
    completion.raw_usage = {"characters": characters}
    cost, _ = await gateway.settlement.settle_completion(call, target, completion, None)
    return _reply(call, cost, completion.body["content"], completion.body["content_type"])


async def transcription(gateway: Gateway, key: ApiKey, request: TranscriptionRequest) -> BytesReply:
    routes = await gateway.admission.resolve(key, request.model_ids, "transcription")
    operation = Operation.TRANSLATIONS if request.translate else Operation.TRANSCRIPTIONS
    call, target, completion = await _answer(
        gateway, key, routes, request.body, None, operation, SECOND, request.seconds
    )
    reported = completion.usage
    seconds = reported.units if reported is not None else request.seconds
    completion.usage = Usage(units=max(seconds, min_billed_seconds(_vendor(target))))
    if reported is None:
        completion.raw_usage = {
            "seconds": None,
            "file_seconds": request.seconds,
            **(completion.raw_usage or {}),
        }
    cost, charged = await gateway.settlement.settle_completion(call, target, completion, None)
    data = completion.body.get("json")
    if data is None:  # text, SRT or VTT: as the provider sent it
        return _reply(call, cost, completion.body["content"], completion.body["content_type"])
    usage = data.get("usage")
    usage = dict(usage) if isinstance(usage, dict) else {"type": "duration", "seconds": charged.units}
    usage["cost"] = jsonx.usd_literal(format_usd(cost))
    data["usage"] = usage
    return _reply(call, cost, jsonx.dumps(data), "application/json")
