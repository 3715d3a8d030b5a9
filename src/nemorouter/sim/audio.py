"""OpenAI's Audio API for the sim: ``POST /v1/audio/speech``, ``/v1/audio/transcriptions`` and
``/v1/audio/translations``, deterministic, in the shapes the ``openai`` SDK parses.

- Speech answers audio whose length follows the input: 10 ms of silence per character. ``wav``
  is a WAV file, ``pcm`` raw 16-bit samples at 24 kHz (OpenAI's), ``mp3`` MPEG-1 Layer III
  frames of silence; the formats it cannot encode (opus, aac, flac) get WAV, typed audio/wav.
- Transcription and translation read the file's duration with mutagen (a file it cannot read
  is OpenAI's 400 ``Invalid file format``) and answer a sentence naming it. ``json`` carries
  ``usage: {"type": "duration", "seconds"}`` (seconds rounded up) on transcriptions, none on
  translations (OpenAI's translation answer is ``{"text"}``); ``verbose_json`` adds
  ``duration``, ``language`` and one segment; ``text``, ``srt`` and ``vtt`` are text.

Fault directives (sim/faults.py) come from the ``x-sim`` header or in-band ``[sim:...]`` in the
speech ``input`` or the transcription ``prompt``: ``status``, ``retry_after``, ``latency_ms``,
``malformed``, ``bad_key``, and for transcriptions ``no_usage=1`` (no usage, no duration: the
gateway must bill what it held) and ``report_seconds=N`` (a lying provider: reports N seconds
whatever the file holds).
"""

from __future__ import annotations

import io
import math
import wave
from typing import Any

import mutagen
import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.content import inband_directives, parse_pairs
from nemorouter.sim.faults import collect_faults, sleep_ms
from nemorouter.sim.openai_wire import bad_key_response, error_response, fault_response, prelude
from nemorouter.sim.state import SimState, bearer_key

JSON = "application/json"
SECONDS_PER_CHARACTER = 0.01
_TYPES = {"mp3": "audio/mpeg", "pcm": "audio/pcm", "wav": "audio/wav"}
# One MPEG-1 Layer III frame, 128 kbit/s, 44.1 kHz, mono, no padding: a header and zeroed side
# information and main data, which decodes to silence (417 bytes, 1,152 samples: 26.1 ms).
MP3_FRAME = b"\xff\xfb\x90\xc4" + bytes(413)


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV of silence lasting `seconds`."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(2 * round(seconds * rate)))
    return out.getvalue()


def mp3_bytes(seconds: float) -> bytes:
    """MP3 frames of silence lasting at least `seconds`."""
    return MP3_FRAME * max(1, math.ceil(seconds * 44100 / 1152))


def speech_audio(text: str, response_format: str) -> tuple[bytes, str]:
    seconds = max(1, len(text)) * SECONDS_PER_CHARACTER
    if response_format == "mp3":
        return mp3_bytes(seconds), _TYPES["mp3"]
    if response_format == "pcm":
        return bytes(2 * round(seconds * 24000)), _TYPES["pcm"]
    return wav_bytes(seconds), _TYPES["wav"]


async def speech(request: Request) -> Response:
    pre = await prelude(request, lambda b: [b["input"]] if isinstance(b.get("input"), str) else [])
    if pre.early is not None:
        return pre.early
    body = pre.body
    text, model, voice = body.get("input"), body.get("model"), body.get("voice")
    if not isinstance(model, str) or not model:
        return error_response(
            400, "you must provide a model parameter", "invalid_request_error", param="model"
        )
    if not isinstance(text, str) or not text or len(text) > 4096:
        return error_response(
            400, "'input' must be a string of 1 to 4096 characters.", "invalid_request_error", param="input"
        )
    if not voice:
        return error_response(400, "'voice' is required.", "invalid_request_error", param="voice")
    audio, kind = speech_audio(text, str(body.get("response_format") or "mp3"))
    if pre.faults.malformed:  # a 200 that is not audio
        return Response(b'{"object": "speech", "data": ', media_type=JSON)
    return Response(audio, media_type=kind)


def file_duration(data: bytes) -> float | None:
    try:
        found = mutagen.File(io.BytesIO(data))
        length = found.info.length if found is not None else None
    except Exception:
        return None
    return float(length) if isinstance(length, (int, float)) and length > 0 else None


def _stamp(seconds: float, comma: bool) -> str:
    ms = round(seconds * 1000)
    text = f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    return text.replace(".", ",") if comma else text


def transcript_body(
    duration: float, translate: bool, response_format: str, language: str | None, reported: int | None
) -> tuple[bytes, str]:
    """The answer to a transcription (or translation) of `duration` seconds of audio;
    `reported`: the seconds to report (None: no usage, no duration)."""
    text = f"Simulated {'translation' if translate else 'transcript'} of {duration:.2f} seconds of audio."
    if response_format == "text":
        return (text + "\n").encode(), "text/plain; charset=utf-8"
    if response_format == "srt":
        cue = f"1\n{_stamp(0, True)} --> {_stamp(duration, True)}\n{text}\n\n"
        return cue.encode(), "application/x-subrip"
    if response_format == "vtt":
        cue = f"WEBVTT\n\n{_stamp(0, False)} --> {_stamp(duration, False)}\n{text}\n\n"
        return cue.encode(), "text/vtt; charset=utf-8"
    out: dict[str, Any] = {"text": text}
    if response_format == "verbose_json":
        out = {
            "task": "translate" if translate else "transcribe",
            "language": "english" if translate else (language or "english"),
            "text": text,
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text, "tokens": []}],
        }
        if reported is not None:
            out["duration"] = float(reported)
    if reported is not None and not translate:
        out["usage"] = {"type": "duration", "seconds": reported}
    return orjson.dumps(out), JSON


async def _transcribe(request: Request, translate: bool) -> Response:
    state: SimState = request.app.state.sim
    raw = await request.body()
    try:
        form = await request.form()
    except Exception:
        form = None
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)} if form is not None else {}
    upload = form.get("file") if form is not None else None
    data = await upload.read() if isinstance(upload, UploadFile) else None
    seen = {**fields, "file": None if data is None else {"filename": upload.filename, "bytes": len(data)}}  # type: ignore[union-attr]
    state.record(request, raw, seen)
    if not state.key_accepted(bearer_key(request.headers.get("authorization"))):
        return bad_key_response()
    prompt = fields.get("prompt", "")
    faults = collect_faults(request.headers.get("x-sim"), [prompt])
    await sleep_ms(faults.latency_ms)
    if faults.bad_key:
        return bad_key_response()
    if faults.status is not None:
        return fault_response(faults)
    if not fields.get("model"):
        return error_response(
            400, "you must provide a model parameter", "invalid_request_error", param="model"
        )
    duration = file_duration(data) if data else None
    if duration is None:
        message = (
            "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'ogg', 'wav', 'webm']"
        )
        return error_response(400, message, "invalid_request_error", param="file")
    directives = inband_directives([prompt])
    directives.update(parse_pairs(request.headers.get("x-sim") or ""))
    reported: int | None = math.ceil(duration)
    if directives.get("report_seconds", "").isdigit():
        reported = int(directives["report_seconds"])
    if faults.no_usage:
        reported = None
    body, kind = transcript_body(
        duration, translate, fields.get("response_format") or "json", fields.get("language"), reported
    )
    if faults.malformed:
        body = body[: len(body) // 2] if kind == JSON else b""
    return Response(body, headers={"content-type": kind})


async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, translate=False)


async def translations(request: Request) -> Response:
    return await _transcribe(request, translate=True)


def routes() -> list[Route]:
    return [
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", translations, methods=["POST"]),
    ]
