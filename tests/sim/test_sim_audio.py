"""The sim's Audio API, straight from the official `openai` SDK: every answer parses, speech is
real audio whose length follows the input, transcriptions report the file's own duration, and
the fault directives work."""

from __future__ import annotations

import io

import mutagen
import openai
import pytest

from conftest import SIM_PROVIDER_SECRET, Sim
from nemorouter.sim.audio import mp3_bytes
from nemorouter.sim.audio import wav_bytes as wav  # a WAV of silence, as the sim makes it


@pytest.fixture
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key=SIM_PROVIDER_SECRET, max_retries=0)


def test_speech_is_audio_whose_length_follows_the_input(client: openai.OpenAI) -> None:
    short = client.audio.speech.create(model="tts-1", voice="alloy", input="a" * 100, response_format="wav")
    long = client.audio.speech.create(model="tts-1", voice="alloy", input="a" * 400, response_format="wav")
    assert short.response.headers["content-type"] == "audio/wav"
    lengths = [mutagen.File(io.BytesIO(answer.content)).info.length for answer in (short, long)]
    assert lengths == [1.0, 4.0]
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input="hello")
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    assert mutagen.File(io.BytesIO(mp3.content)).info.length > 0


def test_transcriptions_in_every_format(client: openai.OpenAI) -> None:
    audio = ("a.wav", wav(2.5), "audio/wav")
    answer = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "2.50 seconds" in answer.text
    assert answer.usage is not None and answer.usage.type == "duration" and answer.usage.seconds == 3
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=audio, response_format="verbose_json"
    )
    assert verbose.duration == 3 and verbose.segments and verbose.segments[0].end == 2.5
    text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert isinstance(text, str) and "transcript" in text
    srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert "00:00:00,000 --> 00:00:02,500" in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    assert vtt.startswith("WEBVTT") and "00:00:02.500" in vtt
    mp3 = client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", mp3_bytes(1), "audio/mpeg"))
    assert mp3.usage is not None and mp3.usage.seconds in (1, 2)


def test_translations_report_no_usage_in_json(client: openai.OpenAI) -> None:
    with pytest.warns(DeprecationWarning):  # this SDK marks translations deprecated; still served
        raw = client.audio.translations.with_raw_response.create(
            model="whisper-1", file=("a.wav", wav(1), "audio/wav")
        )
    assert "translation" in raw.parse().text
    assert "usage" not in raw.http_response.json()


def test_directives_and_an_unreadable_file(client: openai.OpenAI) -> None:
    lying = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav(1), "audio/wav"), prompt="[sim:report_seconds=500]"
    )
    assert lying.usage is not None and lying.usage.seconds == 500
    silent = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav(1), "audio/wav"), prompt="[sim:no_usage=1]"
    )
    assert "usage" not in silent.http_response.json()
    with pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav(1), "audio/wav"), prompt="[sim:status=503]"
        )
    with pytest.raises(openai.BadRequestError, match="Invalid file format"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"not audio", "audio/wav"))
    with pytest.raises(openai.InternalServerError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi [sim:status=500]")
