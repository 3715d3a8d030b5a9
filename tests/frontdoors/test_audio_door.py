"""The audio front doors' parsing: the speech body, the multipart form (built by the OpenAI-wire
adapter's own encoder, and by hand when hostile), and the duration read from the file."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.audio import duration_seconds, parse_speech, parse_transcription
from nemorouter.frontdoors.multipart_form import MAX_PARTS, parse_form
from nemorouter.providers.audio_wire import multipart_form
from nemorouter.providers.canonical import AudioUpload
from nemorouter.sim.audio import wav_bytes as wav  # a WAV of silence, as the sim makes it


def test_speech_counts_code_points_and_refuses_past_4096() -> None:
    text = "héllo 👋 世界"  # 10 code points, 17 UTF-8 bytes, 11 UTF-16 units
    request = parse_speech(b'{"model": "openai/tts-1", "voice": "alloy", "input": "%s"}' % text.encode())
    assert request.characters == 10 and request.model_ids == ["openai/tts-1"]
    assert parse_speech(b'{"model": "m", "voice": "alloy", "input": "%s"}' % (b"a" * 4096)).characters == 4096
    with pytest.raises(InvalidRequest, match="4097 characters"):
        parse_speech(b'{"model": "m", "voice": "alloy", "input": "%s"}' % (b"a" * 4097))


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m", "voice": "alloy"}',
        b'{"model": "m", "voice": "alloy", "input": ""}',
        b'{"model": "m", "voice": "alloy", "input": 7}',
        b'{"model": "m", "input": "hi"}',
        b'{"model": "m", "voice": "alloy", "input": "hi", "response_format": "ogg"}',
        b'{"model": "m", "voice": "alloy", "input": "hi", "speed": 9}',
        b'{"model": "m", "voice": "alloy", "input": "hi", "speed": true}',
        b'{"model": "m", "voice": "alloy", "input": "hi", "stream_format": "sse"}',
        b'{"voice": "alloy", "input": "hi"}',
        b"[1]",
    ],
)
def test_bad_speech_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_speech(body)


def test_the_adapters_form_round_trips_through_the_doors_parser() -> None:
    data = wav(1.5)
    fields = {"model": "whisper-1", "prompt": 'say "hi"\r\n', "timestamp_granularities": ["word", "segment"]}
    body, content_type = multipart_form(fields, AudioUpload('a "b".wav', "audio/wav", data))
    parsed, upload = parse_form(body, content_type.encode())
    assert parsed == fields
    assert upload.data == data and upload.content_type == "audio/wav"
    assert upload.filename == "a %22b%22.wav"  # quoted as browsers quote it


def test_the_boundary_never_occurs_in_the_content() -> None:
    upload = AudioUpload("a.wav", "audio/wav", b"x")
    _, content_type = multipart_form({"model": "m"}, upload)
    boundary = content_type.split("boundary=")[1]
    trap = f"--{boundary}\r\n"  # a field that holds the boundary drawn for this file
    body, content_type = multipart_form({"model": "m", "prompt": trap}, upload)
    assert content_type.split("boundary=")[1] != boundary
    assert parse_form(body, content_type.encode())[0]["prompt"] == trap


def _form(*parts: tuple[str, bytes], boundary: bytes = b"XyZ") -> bytes:
    out = b""
    for head, data in parts:
        out += b"--" + boundary + b"\r\n" + head.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


FILE = ('Content-Disposition: form-data; name="file"; filename="a.wav"', b"RIFF")
MODEL = ('Content-Disposition: form-data; name="model"', b"whisper-1")
CT = b"multipart/form-data; boundary=XyZ"


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (_form(MODEL, FILE), None, "no Content-Type"),
        (_form(MODEL, FILE), b"application/json", "multipart/form-data"),
        (_form(MODEL, FILE), b"multipart/form-data", "boundary"),
        (_form(MODEL, FILE)[:-9], CT, "incomplete"),
        (b"garbage without any boundary", CT, "incomplete|malformed"),
        (_form(MODEL), CT, "non-empty `file`"),
        (_form(MODEL, ('Content-Disposition: form-data; name="file"', b"")), CT, "non-empty `file`"),
        (_form(MODEL, FILE, FILE), CT, "exactly one"),
        (_form(MODEL, FILE, ('Content-Disposition: form-data; name="file[]"', b"x")), CT, "exactly one"),
        (_form(MODEL, FILE, ("Content-Disposition: form-data", b"x")), CT, "no name"),
        (_form(MODEL, FILE, ('Content-Disposition: form-data; name="p"', b"\xff\xfe")), CT, "UTF-8"),
        (_form(MODEL, FILE, ('Content-Disposition: form-data; name="p"', b"a" * 70000)), CT, "over"),
        (_form(*[MODEL] * MAX_PARTS, FILE), CT, "more than"),
    ],
)
def test_bad_forms_are_400s(raw: bytes, content_type: bytes | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_form(raw, content_type)


async def test_a_transcription_is_held_for_the_files_duration_rounded_up() -> None:
    raw = _form(MODEL, ('Content-Disposition: form-data; name="file"; filename="a.wav"', wav(2.01)))
    request = await parse_transcription(raw, CT, translate=False)
    assert request.seconds == 3 and request.model_ids == ["whisper-1"]
    assert request.body["model"] == "whisper-1" and request.body["file"].filename == "a.wav"


@pytest.mark.parametrize(
    "extra",
    [
        ('Content-Disposition: form-data; name="response_format"', b"mp3"),
        ('Content-Disposition: form-data; name="temperature"', b"hot"),
        ('Content-Disposition: form-data; name="temperature"', b"1.5"),
        ('Content-Disposition: form-data; name="stream"', b"true"),
        ('Content-Disposition: form-data; name="model"', b"again"),
    ],
)
async def test_bad_transcription_fields_are_400s(extra: tuple[str, bytes]) -> None:
    raw = _form(MODEL, ('Content-Disposition: form-data; name="file"; filename="a.wav"', wav(1)), extra)
    with pytest.raises(InvalidRequest):
        await parse_transcription(raw, CT, translate=False)


@pytest.mark.parametrize(
    "data",
    [
        b"not audio at all" * 10,
        b"RIFF\x00\x00\x00\x00WAVE",  # a WAV header and nothing else
        wav(0),  # a WAV with no samples: no positive length
        b"\xff\xfb" + bytes(10),  # the start of an MP3 frame header, cut
    ],
)
def test_an_unreadable_duration_is_a_400(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="duration"):
        duration_seconds(data)


def test_durations_of_known_formats() -> None:
    assert duration_seconds(wav(1)) == 1
    assert duration_seconds(wav(1.001)) == 2
    assert duration_seconds(wav(61.5, rate=16000)) == 62


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"XyZ", b"a", b"--", b"x" * 70]))
def test_any_body_is_a_form_or_a_400(raw: bytes, boundary: bytes) -> None:
    """A hostile body never gets past the parser as anything but a form, or a clear 400."""
    try:
        fields, upload = parse_form(raw, b"multipart/form-data; boundary=" + boundary)
    except InvalidRequest:
        return
    assert upload.data and all(isinstance(v, (str, list)) for v in fields.values())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_file_has_a_duration_or_is_a_400(data: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        assert duration_seconds(b"RIFF" + data) >= 1
