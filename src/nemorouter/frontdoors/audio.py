"""The front doors of OpenAI's Audio API: `POST /v1/audio/speech` (JSON in, the audio's bytes
out), `POST /v1/audio/transcriptions` and `POST /v1/audio/translations` (a multipart form in:
`file`, `model`, `language`?, `prompt`?, `response_format`?, `temperature`?; the text out in the
format asked for).

What each is billed by is read here, once, and never guessed:
- speech: the input's characters, Unicode code points (Python's `len`, as OpenAI counts its
  4,096-character limit); more than 4,096 is a 400;
- transcription and translation: the file's duration, read from the file itself with mutagen
  (mp3, m4a/mp4, ogg/opus, flac, wav, ...) and rounded up to whole seconds. A file whose
  duration cannot be read is a 400 that reaches no provider.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any

import mutagen

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.door import FrontDoor
from nemorouter.frontdoors.json_body import json_object
from nemorouter.frontdoors.multipart_form import parse_form
from nemorouter.frontdoors.openai_chat import model_ids, provider_prefs
from nemorouter.providers.canonical import SpeechRequest, TranscriptionRequest
from nemorouter.service import media
from nemorouter.service.gateway import Gateway
from nemorouter.service.media import BytesReply
from nemorouter.store.records import ApiKey

MAX_SPEECH_CHARACTERS = 4096  # OpenAI's limit on `input` (platform.openai.com, audio/createSpeech)
SPEECH_FORMATS = frozenset({"mp3", "opus", "aac", "flac", "wav", "pcm"})
TEXT_FORMATS = frozenset({"json", "text", "srt", "verbose_json", "vtt"})
_CONTENT_TYPE = b"content-type"


def parse_speech(raw: bytes) -> SpeechRequest:
    body = json_object(raw)
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise InvalidRequest("`input` must be a non-empty string")
    characters = len(text)
    if characters > MAX_SPEECH_CHARACTERS:
        raise InvalidRequest(f"`input` is {characters} characters; the maximum is {MAX_SPEECH_CHARACTERS}")
    voice = body.get("voice")
    if not (isinstance(voice, str) and voice) and not (isinstance(voice, dict) and voice.get("id")):
        raise InvalidRequest('`voice` must be a voice name or {"id": ...}')
    if body.get("response_format", "mp3") not in SPEECH_FORMATS:
        raise InvalidRequest(f"`response_format` must be one of {', '.join(sorted(SPEECH_FORMATS))}")
    speed = body.get("speed")
    if speed is not None and (type(speed) not in (int, float) or not 0.25 <= speed <= 4.0):
        raise InvalidRequest("`speed` must be a number from 0.25 to 4.0")
    if body.get("stream_format", "audio") != "audio":
        raise InvalidRequest("only `stream_format` audio is served: the answer is the audio's bytes")
    return SpeechRequest(body, model_ids(body), characters, prefs=provider_prefs(body))


def duration_seconds(data: bytes) -> int:
    """The audio's duration in whole seconds, rounded up, read from the file; a 400 when the file
    is not audio mutagen knows or names no positive, finite length."""
    try:
        found = mutagen.File(io.BytesIO(data))
        length = found.info.length if found is not None else None
    except Exception:  # mutagen's parse errors, and whatever a hostile file provokes in it
        length = None
    if not isinstance(length, (int, float)) or not math.isfinite(length) or length <= 0:
        raise InvalidRequest(
            "the duration of the uploaded `file` cannot be read (send mp3, mp4/m4a, ogg/opus, flac or wav)"
        )
    return math.ceil(length)


def _check_fields(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if isinstance(value, list) and name != "timestamp_granularities" and name != "include":
            raise InvalidRequest(f"the form field `{name}` is given more than once")
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required")
    if fields.get("response_format", "json") not in TEXT_FORMATS:
        raise InvalidRequest(f"`response_format` must be one of {', '.join(sorted(TEXT_FORMATS))}")
    temperature = fields.get("temperature")
    if temperature is not None:
        try:
            ok = 0.0 <= float(temperature) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise InvalidRequest("`temperature` must be a number from 0 to 1")
    if str(fields.get("stream", "false")).lower() != "false":
        raise InvalidRequest("streamed transcriptions are not served; leave `stream` unset")


async def parse_transcription(
    raw: bytes, content_type: bytes | None, translate: bool
) -> TranscriptionRequest:
    fields, upload = parse_form(raw, content_type)
    _check_fields(fields)
    # Off the event loop: reading a long file's frames takes a while.
    seconds = await asyncio.to_thread(duration_seconds, upload.data)
    body: dict[str, Any] = {**fields, "file": upload}
    return TranscriptionRequest(body, [fields["model"]], seconds, translate=translate)


async def speech(gateway: Gateway, key: ApiKey, raw: bytes) -> BytesReply:
    return await media.speech(gateway, key, parse_speech(raw))


def _form_door(translate: bool) -> FrontDoor:
    async def refuse_without_headers(gateway: Gateway, key: ApiKey, raw: bytes) -> BytesReply:
        return await serve(gateway, key, raw, {})

    async def serve(gateway: Gateway, key: ApiKey, raw: bytes, headers: dict[bytes, bytes]) -> BytesReply:
        request = await parse_transcription(raw, headers.get(_CONTENT_TYPE), translate)
        return await media.transcription(gateway, key, request)

    path = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
    return FrontDoor(path, refuse_without_headers, reads=frozenset({_CONTENT_TYPE}), serve_with_headers=serve)


SPEECH = FrontDoor("/v1/audio/speech", speech)
TRANSCRIPTIONS = _form_door(translate=False)
TRANSLATIONS = _form_door(translate=True)
