"""The OpenAI-wire audio adapter: requests built for the deployment's model, answers read as the
untrusted bytes they are (audio, JSON or text), the seconds a transcription reports."""

from __future__ import annotations

import orjson
import pytest

from nemorouter.providers.audio_wire import (
    reported_seconds,
    speech_request,
    speech_response,
    transcription_request,
    transcription_response,
    translation_request,
)
from nemorouter.providers.canonical import AudioUpload
from nemorouter.providers.types import Upstream

UP = Upstream("whisper-large-v3", "https://api.groq.com/openai/v1/", "sk-test", config={"vendor": "groq"})


def test_speech_request_sends_the_deployments_model_and_no_gateway_field() -> None:
    sent = speech_request({"model": "openai/tts-1", "input": "hi", "voice": "alloy", "models": ["x"]}, UP)
    assert sent.url == "https://api.groq.com/openai/v1/audio/speech"
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert orjson.loads(sent.body) == {"model": "whisper-large-v3", "input": "hi", "voice": "alloy"}


def test_speech_answer_is_the_audio_as_sent() -> None:
    got = speech_response(b"ID3\x00audio", "audio/mpeg")
    assert got.body == {"content": b"ID3\x00audio", "content_type": "audio/mpeg"} and got.usage is None
    assert speech_response(b"RIFF", "").body["content_type"] == "application/octet-stream"
    assert (
        speech_response(b"RIFF", "audio/wav\r\nx-evil: 1").body["content_type"] == "application/octet-stream"
    )
    for body, kind in ((b"", "audio/mpeg"), (b'{"error": 1}', "application/json"), (b"hi", "text/plain")):
        with pytest.raises(ValueError):
            speech_response(body, kind)


def test_a_form_is_rebuilt_with_the_deployments_model() -> None:
    body = {
        "model": "groq/whisper-large-v3",
        "language": "en",
        "file": AudioUpload("a.wav", "audio/wav", b"RIFF"),
    }
    sent = transcription_request(body, UP)
    assert sent.url == "https://api.groq.com/openai/v1/audio/transcriptions"
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=nemo-")
    assert b'name="model"\r\n\r\nwhisper-large-v3\r\n' in sent.body
    assert b'name="language"\r\n\r\nen\r\n' in sent.body and b"groq/" not in sent.body
    assert b'filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n' in sent.body
    assert translation_request(body, UP).url.endswith("/audio/translations")


@pytest.mark.parametrize(
    ("data", "seconds"),
    [
        ({"text": "x", "usage": {"type": "duration", "seconds": 3}}, 3),
        ({"text": "x", "usage": {"type": "duration", "seconds": 2.01}}, 3),
        ({"text": "x", "duration": 7.5}, 8),
        ({"text": "x", "duration": 0}, 0),
        ({"text": "x"}, None),
        ({"text": "x", "usage": {"type": "tokens", "input_tokens": 5}}, None),
        ({"text": "x", "usage": {"type": "duration", "seconds": -1}}, None),
        ({"text": "x", "usage": {"type": "duration", "seconds": "3"}}, None),
        ({"text": "x", "usage": {"type": "duration", "seconds": True}}, None),
        ({"text": "x", "duration": float("inf")}, None),
        ({"text": "x", "duration": 10**30}, 10**12),  # cut to a plausible count (and then to the hold)
    ],
)
def test_reported_seconds(data: dict[str, object], seconds: int | None) -> None:
    assert reported_seconds(data) == seconds


def test_transcription_answers() -> None:
    json_answer = orjson.dumps({"text": "hello", "usage": {"type": "duration", "seconds": 4}})
    got = transcription_response(json_answer, "application/json")
    assert got.usage is not None and got.usage.units == 4 and got.body["json"]["text"] == "hello"
    text = transcription_response(b"hello\n", "text/plain; charset=utf-8")
    assert text.usage is None and text.body == {
        "content": b"hello\n",
        "content_type": "text/plain; charset=utf-8",
    }
    for bad in (b"[1]", b'{"no": "text"}', b"{"):
        with pytest.raises(ValueError):
            transcription_response(bad, "application/json")
