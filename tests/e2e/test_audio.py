"""OpenAI's Audio API through the real gateway, with the official `openai` SDK, to the sim:
speech charged per input character, transcription and translation per second of the uploaded
file (read from the file), each exactly at the catalog's price; a file whose duration cannot be
read and a malformed form are 400s that reach no provider; a lying provider is charged at most
the hold; a request that cannot fit is a 402 with needed/available; a failure charges nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import mutagen
import openai
import pytest

from conftest import SIM_PROVIDER_SECRET, Gateway, Sim, new_gateway
from nemorouter.sim.audio import mp3_bytes
from nemorouter.sim.audio import wav_bytes as wav  # a WAV of silence, as the sim makes it

# The catalog's prices (src/nemorouter/data/catalog.csv), USD per unit.
TTS = Decimal("0.000015")  # openai/tts-1, per character ($15 per 1M)
TTS_HD = Decimal("0.00003")  # openai/tts-1-hd, per character ($30 per 1M)
WHISPER = Decimal("0.0001")  # openai/whisper-1, per second ($0.006 per minute)
GROQ_V3 = Decimal("0.000030833333")  # groq/whisper-large-v3, per second ($0.111 per hour)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("audio"), sim)
    gw.cli(
        "providers", "add", "simgroq", "--kind", "openai-compatible", "--base-url", f"{sim.url}/v1",
        "--vendor", "groq",
    )  # fmt: skip
    gw.cli("providers", "add-key", "simgroq", "--label", "main", input=SIM_PROVIDER_SECRET + "\n")
    gw.cli("models", "import", "--vendor", "groq", "--provider", "simgroq")
    gw.start()
    yield gw
    assert gw.verify()["ok"] is True
    assert gw.stop() == 0


def record(gw: Gateway, key: str, request_id: str) -> dict[str, Any]:
    found = httpx.get(
        f"{gw.url}/v1/generation", params={"id": request_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert found.status_code == 200, found.text
    data: dict[str, Any] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def spent(gw: Gateway, account: str, credits: str = "5.00") -> Decimal:
    return Decimal(credits) - Decimal(str(gw.balance(account)["balance"]))


def customer(gw: Gateway, credits: str = "5.00") -> tuple[str, str, openai.OpenAI]:
    account = gw.account(credits)
    key = gw.key(account)
    client: openai.OpenAI = gw.openai(key)
    return account, key, client


# -- speech ---------------------------------------------------------------------------------------


def test_speech_is_charged_per_input_character(gw: Gateway, sim: Sim) -> None:
    account, key, client = customer(gw)
    text = "Hello from the gateway. " * 10
    raw = client.audio.speech.with_raw_response.create(
        model="openai/tts-1", voice="alloy", input=text, response_format="wav"
    )
    audio = raw.parse().content
    assert raw.headers["content-type"] == "audio/wav"
    assert mutagen.File(io.BytesIO(audio)).info.length == pytest.approx(len(text) * 0.01)
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/audio/speech" and sent["body"]["model"] == "tts-1"
    assert sent["body"]["input"] == text and sent["body"]["voice"] == "alloy"
    cost = Decimal(raw.headers["x-nemo-cost"])
    assert cost == len(text) * TTS
    assert spent(gw, account) == cost
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["status"] == "success" and gen["model"] == "openai/tts-1" and gen["total_cost"] == cost
    assert gen["unit"] == "character" and gen["units"] == len(text)


def test_speech_counts_unicode_code_points(gw: Gateway) -> None:
    account, _, client = customer(gw)
    text = "Grüße, 世界! 👋🏽"  # 13 code points; 24 UTF-8 bytes; 15 UTF-16 units
    answer = client.audio.speech.with_raw_response.create(model="openai/tts-1-hd", voice="nova", input=text)
    assert answer.headers["content-type"] == "audio/mpeg"
    assert Decimal(answer.headers["x-nemo-cost"]) == 13 * TTS_HD == spent(gw, account)


def test_speech_over_4096_characters_reaches_no_provider(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw)
    sim.clear()
    with pytest.raises(openai.BadRequestError, match="4097 characters"):
        client.audio.speech.create(model="openai/tts-1", voice="alloy", input="a" * 4097)
    assert sim.requests() == [] and spent(gw, account) == 0


def test_speech_that_cannot_fit_is_a_402(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw, credits="0.001")  # 66 characters of tts-1
    sim.clear()
    with pytest.raises(openai.APIStatusError) as refused:
        client.audio.speech.create(model="openai/tts-1", voice="alloy", input="a" * 100)
    assert refused.value.status_code == 402
    error = json.loads(refused.value.response.text, parse_float=Decimal)["error"]
    assert error["needed"] == 100 * TTS and error["available"] == Decimal("0.001")
    assert sim.requests() == [] and spent(gw, account, "0.001") == 0


def test_a_failed_speech_charges_nothing(gw: Gateway) -> None:
    account, _, client = customer(gw)
    with pytest.raises(openai.APIStatusError) as failed:
        client.audio.speech.create(model="openai/tts-1", voice="alloy", input="hi [sim:status=500]")
    assert failed.value.status_code >= 500
    with pytest.raises(openai.APIStatusError):  # a 200 that is no audio: unreadable, charges nothing
        client.audio.speech.create(model="openai/tts-1", voice="alloy", input="hi [sim:malformed=1]")
    assert spent(gw, account) == 0


# -- transcription and translation ------------------------------------------------------------------


def test_a_transcription_is_charged_the_seconds_reported(gw: Gateway, sim: Sim) -> None:
    account, key, client = customer(gw)
    raw = client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("talk.wav", wav(2.5), "audio/wav"), language="en"
    )
    answer = raw.parse()
    assert "2.50 seconds" in answer.text
    assert answer.usage is not None and answer.usage.type == "duration" and answer.usage.seconds == 3
    cost = Decimal(raw.headers["x-nemo-cost"])
    assert cost == 3 * WHISPER == spent(gw, account)
    body = json.loads(raw.http_response.text, parse_float=Decimal)
    assert body["usage"]["cost"] == cost
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/audio/transcriptions" and sent["body"]["model"] == "whisper-1"
    assert sent["body"]["language"] == "en" and sent["body"]["file"] == {
        "filename": "talk.wav",
        "bytes": 40044,
    }
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["status"] == "success" and gen["total_cost"] == cost
    assert gen["unit"] == "second" and gen["units"] == 3


@pytest.mark.parametrize(
    ("response_format", "content_type"),
    [("text", "text/plain"), ("srt", "application/x-subrip"), ("vtt", "text/vtt")],
)
def test_text_formats_pass_through_charged_the_files_seconds(
    gw: Gateway, response_format: str, content_type: str
) -> None:
    account, _, client = customer(gw)
    raw = client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("a.wav", wav(1.2), "audio/wav"), response_format=response_format
    )
    text = raw.parse()
    assert isinstance(text, str) and "1.20 seconds" in text
    assert raw.headers["content-type"].startswith(content_type)
    assert Decimal(raw.headers["x-nemo-cost"]) == 2 * WHISPER == spent(gw, account)


def test_verbose_json_and_mp3(gw: Gateway) -> None:
    account, _, client = customer(gw)
    verbose = client.audio.transcriptions.create(
        model="openai/whisper-1", file=("a.wav", wav(4), "audio/wav"), response_format="verbose_json"
    )
    assert verbose.duration == 4 and verbose.segments
    mp3 = mp3_bytes(3)
    seconds = -(-mutagen.File(io.BytesIO(mp3)).info.length // 1)
    answer = client.audio.transcriptions.create(model="openai/whisper-1", file=("a.mp3", mp3, "audio/mpeg"))
    assert answer.usage is not None and answer.usage.seconds == seconds
    assert spent(gw, account) == (4 + Decimal(seconds)) * WHISPER


def test_a_translation_reports_no_usage_and_is_charged_the_held_seconds(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw)
    with pytest.warns(DeprecationWarning):  # this SDK marks translations deprecated; still served
        raw = client.audio.translations.with_raw_response.create(
            model="openai/whisper-1", file=("a.wav", wav(6.2), "audio/wav")
        )
    assert "translation" in raw.parse().text
    assert sim.requests(1)[-1]["path"] == "/v1/audio/translations"
    assert Decimal(raw.headers["x-nemo-cost"]) == 7 * WHISPER == spent(gw, account)


def test_a_lying_provider_is_charged_at_most_the_hold(gw: Gateway) -> None:
    account, key, client = customer(gw)
    raw = client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("a.wav", wav(2), "audio/wav"), prompt="[sim:report_seconds=500]"
    )
    assert raw.parse().usage.seconds == 500  # type: ignore[union-attr]  # what the provider said
    assert Decimal(raw.headers["x-nemo-cost"]) == 2 * WHISPER == spent(gw, account)
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["total_cost"] == 2 * WHISPER and gen["units"] == 2
    assert gw.verify()["overruns"] >= 1  # the provider's 500 seconds: the operator's, not the customer's


def test_groq_bills_at_least_ten_seconds(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw)
    raw = client.audio.transcriptions.with_raw_response.create(
        model="groq/whisper-large-v3", file=("a.wav", wav(2), "audio/wav")
    )
    assert sim.requests(1)[-1]["body"]["model"] == "whisper-large-v3"
    assert Decimal(raw.headers["x-nemo-cost"]) == 10 * GROQ_V3 == spent(gw, account)
    longer = client.audio.transcriptions.with_raw_response.create(
        model="groq/whisper-large-v3", file=("a.wav", wav(12.5), "audio/wav")
    )
    assert Decimal(longer.headers["x-nemo-cost"]) == 13 * GROQ_V3


def test_a_file_whose_duration_cannot_be_read_reaches_no_provider(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw)
    sim.clear()
    for data in (b"this is not audio" * 50, b"RIFF\x00\x00\x00\x00WAVE", wav(0)):
        with pytest.raises(openai.BadRequestError, match="duration"):
            client.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", data, "audio/wav"))
    assert sim.requests() == [] and spent(gw, account) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"model": "openai/whisper-1"}', "application/json", "multipart/form-data"),
        (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nx\r\n", "multipart/form-data; boundary=B",
         "incomplete"),
        (b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nopenai/whisper-1\r\n--B--\r\n",
         "multipart/form-data; boundary=B", "file"),
        (b"", "multipart/form-data", "boundary"),
    ],
)  # fmt: skip
def test_bad_forms_are_400s_reaching_no_provider(
    gw: Gateway, sim: Sim, body: bytes, content_type: str, message: str
) -> None:
    account, key, _ = customer(gw)
    sim.clear()
    refused = httpx.post(
        f"{gw.url}/v1/audio/transcriptions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]["message"]
    assert sim.requests() == [] and spent(gw, account) == 0


def test_a_transcription_that_cannot_fit_is_a_402(gw: Gateway, sim: Sim) -> None:
    account, _, client = customer(gw, credits="0.0002")  # two seconds of whisper-1
    sim.clear()
    with pytest.raises(openai.APIStatusError) as refused:
        client.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(2.5), "audio/wav"))
    assert refused.value.status_code == 402
    error = json.loads(refused.value.response.text, parse_float=Decimal)["error"]
    assert error["needed"] == 3 * WHISPER and error["available"] == Decimal("0.0002")
    assert sim.requests() == []
    fits = client.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(2), "audio/wav"))
    assert fits.text and spent(gw, account, "0.0002") == Decimal("0.0002")


def test_a_failed_transcription_charges_nothing(gw: Gateway) -> None:
    account, key, client = customer(gw)
    with pytest.raises(openai.APIStatusError) as failed:
        client.audio.transcriptions.with_raw_response.create(
            model="openai/whisper-1", file=("a.wav", wav(1), "audio/wav"), prompt="[sim:status=503]"
        )
    assert failed.value.status_code >= 500
    gen = record(gw, key, failed.value.response.headers["x-nemo-request-id"])
    assert gen["status"] == "error" and gen["total_cost"] == 0
    with pytest.raises(openai.APIStatusError):  # a 200 that is no transcription: unreadable
        client.audio.transcriptions.create(
            model="openai/whisper-1", file=("a.wav", wav(1), "audio/wav"), prompt="[sim:malformed=1]"
        )
    assert spent(gw, account) == 0


def test_a_model_serves_only_its_own_route(gw: Gateway) -> None:
    _, _, client = customer(gw)
    with pytest.raises(openai.APIStatusError) as wrong:
        client.audio.speech.create(model="openai/whisper-1", voice="alloy", input="hi")
    assert wrong.value.status_code in (400, 404)
    with pytest.raises(openai.APIStatusError) as chat:
        client.chat.completions.create(model="openai/tts-1", messages=[{"role": "user", "content": "hi"}])
    assert chat.value.status_code in (400, 404)


def test_an_upload_over_the_body_limit_is_a_413_reaching_no_provider(
    tmp_path_factory: pytest.TempPathFactory, sim: Sim
) -> None:
    small = new_gateway(tmp_path_factory.mktemp("audio-limit"), sim)
    small.env["NEMO_MAX_BODY_BYTES"] = "100000"
    small.start()
    try:
        account, _, client = customer(small)
        sim.clear()
        with pytest.raises(openai.APIStatusError) as refused:
            client.audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(7), "audio/wav"))
        assert refused.value.status_code == 413
        assert sim.requests() == [] and spent(small, account) == 0
        fits = client.audio.transcriptions.create(
            model="openai/whisper-1", file=("a.wav", wav(5), "audio/wav")
        )
        assert fits.text and spent(small, account) == 5 * WHISPER
        assert small.verify()["ok"] is True
    finally:
        assert small.stop() == 0
