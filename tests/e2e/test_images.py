"""`POST /v1/images/generations` and `/v1/images/edits` through the real gateway, with the
official `openai` SDK, to the sim speaking OpenAI: DALL·E charged per image at the tier's list
price, GPT Image per token (text in, image tokens in, image tokens out), each exactly; holds of
`n` x the dearest tier the request can be billed at (402 with needed/available); bad input and
bad forms are 400s that reach no provider; a failed provider charges nothing; a lying usage
report is never billed past the hold."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, Sim, new_gateway
from nemorouter.sim.tokens import count_text_tokens

DALL_E_2, DALL_E_3, GPT_IMAGE = "openai/dall-e-2", "openai/dall-e-3", "openai/gpt-image-1"
# List prices (catalog.csv): USD per image, and GPT Image's per 1M tokens.
PER_IMAGE = {
    (DALL_E_2, "256x256", "standard"): Decimal("0.016"),
    (DALL_E_2, "512x512", "standard"): Decimal("0.018"),
    (DALL_E_2, "1024x1024", "standard"): Decimal("0.02"),
    (DALL_E_3, "1024x1024", "standard"): Decimal("0.04"),
    (DALL_E_3, "1792x1024", "standard"): Decimal("0.08"),
    (DALL_E_3, "1024x1792", "hd"): Decimal("0.12"),
    (DALL_E_3, "1024x1024", "hd"): Decimal("0.08"),
}
M = Decimal(10**6)
TEXT_IN, IMAGE_IN, IMAGE_OUT = Decimal(5) / M, Decimal(10) / M, Decimal(40) / M
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gw = new_gateway(tmp_path_factory.mktemp("images"), sim)
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


def needed(gw: Gateway, path: str, **send: Any) -> tuple[int, dict[str, Any]]:
    """The status and error of a request by a key that affords (almost) nothing."""
    key = gw.key(gw.account("5.00"), limit="0.000001")
    refused = httpx.post(f"{gw.url}{path}", headers={"Authorization": f"Bearer {key}"}, **send)
    return refused.status_code, json.loads(refused.text, parse_float=Decimal).get("error", {})


def test_dall_e_3_is_charged_its_tier_exactly_and_the_sdk_parses_the_answer(gw: Gateway, sim: Sim) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    raw = gw.openai(key).images.with_raw_response.generate(
        model=DALL_E_3,
        prompt="A lighthouse at dusk",
        size="1024x1792",
        quality="hd",
        response_format="b64_json",
    )
    answer = raw.parse()
    assert len(answer.data) == 1 and base64.b64decode(answer.data[0].b64_json).startswith(b"\x89PNG")
    assert answer.data[0].revised_prompt and answer.created > 0
    price = PER_IMAGE[(DALL_E_3, "1024x1792", "hd")]
    assert Decimal(raw.headers["x-nemo-cost"]) == price
    assert json.loads(raw.text, parse_float=Decimal)["usage"]["cost"] == price
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/images/generations" and sent["body"]["model"] == "dall-e-3"
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["endpoint"] == "images" and gen["status"] == "success" and gen["total_cost"] == price
    assert gen["unit"] == "image/1024x1792/hd" and gen["units"] == 1
    assert spent(gw, account) == price


def test_dall_e_2_is_charged_per_image_and_its_defaults_are_sent(gw: Gateway, sim: Sim) -> None:
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    three = client.images.with_raw_response.generate(
        model=DALL_E_2, prompt="Three foxes", n=3, size="512x512"
    )
    assert len(three.parse().data) == 3 and three.parse().data[0].url.startswith("https://")
    assert Decimal(three.headers["x-nemo-cost"]) == 3 * PER_IMAGE[(DALL_E_2, "512x512", "standard")]
    plain = client.images.with_raw_response.generate(prompt="A model-less fox")  # OpenAI's default model
    sent = sim.requests(1)[-1]["body"]
    assert sent["model"] == "dall-e-2" and sent["size"] == "1024x1024" and sent["quality"] == "standard"
    assert Decimal(plain.headers["x-nemo-cost"]) == PER_IMAGE[(DALL_E_2, "1024x1024", "standard")]
    assert json.loads(plain.text)["usage"]["images"] == 1
    assert spent(gw, account) == 3 * Decimal("0.018") + Decimal("0.02")


def test_gpt_image_is_charged_its_tokens_exactly(gw: Gateway) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    prompt = "Two owls on a birch branch, woodcut style"
    raw = gw.openai(key).images.with_raw_response.generate(
        model=GPT_IMAGE, prompt=prompt, n=2, size="1024x1536", quality="high"
    )
    answer = raw.parse()
    assert len(answer.data) == 2 and answer.data[1].b64_json and answer.size == "1024x1536"
    text = count_text_tokens(prompt)
    assert answer.usage.output_tokens == 2 * 6240 and answer.usage.input_tokens_details.text_tokens == text
    expected = text * TEXT_IN + 2 * 6240 * IMAGE_OUT
    assert Decimal(raw.headers["x-nemo-cost"]) == expected == spent(gw, account)
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["tokens"]["prompt"] == text and gen["tokens"]["completion"] == 2 * 6240


def test_gpt_image_auto_is_held_at_the_dearest_and_charged_what_was_made(gw: Gateway) -> None:
    prompt = "A tiny robot watering a plant"
    status, error = needed(gw, "/v1/images/generations", json={"model": GPT_IMAGE, "prompt": prompt, "n": 3})
    assert status == 402 and error["type"] == "key_limit_exceeded"
    assert error["needed"] == (len(prompt) + 8) * TEXT_IN + 3 * 6240 * IMAGE_OUT  # n x the dearest
    assert error["available"] == Decimal("0.000001")
    status, error = needed(
        gw,
        "/v1/images/generations",
        json={"model": GPT_IMAGE, "prompt": prompt, "quality": "low", "size": "1024x1024"},
    )
    assert error["needed"] == (len(prompt) + 8) * TEXT_IN + 272 * IMAGE_OUT  # the exact tier
    account = gw.account("5.00")
    raw = gw.openai(gw.key(account)).images.with_raw_response.generate(model=GPT_IMAGE, prompt=prompt)
    assert raw.parse().quality == "medium"  # what the sim made of auto
    assert Decimal(raw.headers["x-nemo-cost"]) == count_text_tokens(prompt) * TEXT_IN + 1056 * IMAGE_OUT


def test_an_edit_with_images_and_a_mask_is_sent_as_a_form_and_charged_exactly(gw: Gateway, sim: Sim) -> None:
    account = gw.account("5.00")
    key = gw.key(account)
    prompt = "Put both cats in one picture"
    raw = gw.openai(key).images.with_raw_response.edit(
        model=GPT_IMAGE,
        image=[("a.png", PNG, "image/png"), ("b.png", PNG + b"2", "image/png")],
        mask=("m.png", PNG, "image/png"),
        prompt=prompt,
        quality="low",
        size="1024x1024",
    )
    answer = raw.parse()
    assert len(answer.data) == 1 and answer.usage.input_tokens_details.image_tokens == 2 * 194
    sent = sim.requests(1)[-1]
    assert sent["path"] == "/v1/images/edits" and sent["headers"]["content-type"].startswith(
        "multipart/form-data"
    )
    body = sent["body"]
    assert body["model"] == "gpt-image-1" and body["prompt"] == prompt and body["quality"] == "low"
    assert [f["bytes"] for f in body["files"]["image[]"]] == [len(PNG), len(PNG) + 1]
    assert body["files"]["mask"][0]["filename"] == "m.png"
    expected = count_text_tokens(prompt) * TEXT_IN + 2 * 194 * IMAGE_IN + 272 * IMAGE_OUT
    assert Decimal(raw.headers["x-nemo-cost"]) == expected == spent(gw, account)
    gen = record(gw, key, raw.headers["x-nemo-request-id"])
    assert gen["endpoint"] == "image_edits" and gen["total_cost"] == expected
    assert gen["unit"] == "image_input_token" and gen["units"] == 2 * 194


def test_a_dall_e_2_edit_is_charged_per_image(gw: Gateway) -> None:
    account = gw.account("5.00")
    raw = gw.openai(gw.key(account)).images.with_raw_response.edit(
        model=DALL_E_2, image=("a.png", PNG, "image/png"), prompt="Add a hat", n=2, size="256x256"
    )
    assert len(raw.parse().data) == 2
    assert Decimal(raw.headers["x-nemo-cost"]) == 2 * Decimal("0.016") == spent(gw, account)


def test_a_request_that_cannot_fit_is_refused_with_what_it_needs(gw: Gateway, sim: Sim) -> None:
    before = len(sim.requests())
    body = {"model": DALL_E_3, "prompt": "x", "size": "1024x1792", "quality": "hd"}
    status, error = needed(gw, "/v1/images/generations", json=body)
    assert status == 402 and error["needed"] == Decimal("0.12") and error["available"] == Decimal("0.000001")
    status, error = needed(
        gw, "/v1/images/generations", json={"model": DALL_E_3, "prompt": "x", "quality": "auto"}
    )
    assert status == 402 and error["needed"] == Decimal("0.08")  # auto: the dearest at 1024x1024
    status, error = needed(gw, "/v1/images/generations", json={"model": DALL_E_2, "prompt": "x", "n": 10})
    assert status == 402 and error["needed"] == 10 * Decimal("0.02")
    assert len(sim.requests()) == before


@pytest.mark.parametrize(
    "body",
    [
        {"model": DALL_E_2, "prompt": "x", "n": 11},
        {"model": DALL_E_2, "prompt": "x", "n": 10**30},
        {"model": DALL_E_2, "prompt": "x", "n": -1},
        {"model": DALL_E_3, "prompt": "x", "n": 2},
        {"model": DALL_E_3, "prompt": "x", "size": "256x256"},
        {"model": DALL_E_3, "prompt": "x", "size": "1024x1024", "quality": "ultra"},
        {"model": DALL_E_2, "prompt": ""},
        {"model": DALL_E_2, "prompt": "x", "stream": True},
        {"model": "openai/gpt-4o-mini", "prompt": "x"},
        {"model": DALL_E_2, "prompt": "x", "provider": {"sort": "nonsense"}},
    ],
)
def test_bad_input_is_a_400_that_reaches_no_provider(gw: Gateway, sim: Sim, body: dict[str, Any]) -> None:
    key = gw.key(gw.account("1.00"))
    before = len(sim.requests())
    refused = httpx.post(
        f"{gw.url}/v1/images/generations", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request"
    assert len(sim.requests()) == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"prompt": "x", "model": "openai/dall-e-2"}', "application/json"),
        (
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n',
            "multipart/form-data; boundary=b",
        ),
        (b"junk", "multipart/form-data; boundary=b"),
        (
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n',
            "multipart/form-data",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
    ],
)
def test_bad_multipart_is_a_400_that_reaches_no_provider(
    gw: Gateway, sim: Sim, content: bytes, content_type: str
) -> None:
    key = gw.key(gw.account("1.00"))
    before = len(sim.requests())
    refused = httpx.post(
        f"{gw.url}/v1/images/edits",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    assert refused.status_code == 400, refused.text
    assert len(sim.requests()) == before


def test_too_many_images_or_a_huge_n_in_a_form_is_refused(gw: Gateway, sim: Sim) -> None:
    client = gw.openai(gw.key(gw.account("1.00")))
    before = len(sim.requests())
    with pytest.raises(openai.BadRequestError):
        client.images.edit(model=GPT_IMAGE, image=[("a.png", PNG, "image/png")] * 17, prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.images.edit(model=DALL_E_2, image=("a.png", PNG, "image/png"), prompt="x", n=99)
    assert len(sim.requests()) == before


def test_a_failed_provider_charges_nothing(gw: Gateway) -> None:
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    with pytest.raises(openai.InternalServerError):
        client.images.generate(model=DALL_E_3, prompt="Fail upstream [sim:status=500]")
    with pytest.raises(openai.APIStatusError):
        client.images.generate(model=GPT_IMAGE, prompt="Unreadable [sim:malformed=1]")
    with pytest.raises(openai.BadRequestError):  # the provider's own 400: dall-e-3 makes no edits
        client.images.edit(model=DALL_E_3, image=("a.png", PNG, "image/png"), prompt="x")
    assert spent(gw, account) == 0
    assert Decimal(str(gw.balance(account)["held"])) == 0


def test_a_lying_usage_report_is_never_billed_past_the_hold(gw: Gateway) -> None:
    account = gw.account("5.00")
    client = gw.openai(gw.key(account))
    prompt = "Inflate me [sim:report_output=1000000000]"
    raw = client.images.with_raw_response.generate(
        model=GPT_IMAGE, prompt=prompt, quality="low", size="1024x1024"
    )
    first = count_text_tokens(prompt) * TEXT_IN + 272 * IMAGE_OUT  # output cut to the held 272
    assert Decimal(raw.headers["x-nemo-cost"]) == first
    prompt = "Spoil me [sim:bad_usage=negative]"
    raw = client.images.with_raw_response.generate(
        model=GPT_IMAGE, prompt=prompt, quality="low", size="1024x1024"
    )
    second = (len(prompt) + 8) * TEXT_IN + 272 * IMAGE_OUT  # unreadable: the bound and the published tokens
    assert Decimal(raw.headers["x-nemo-cost"]) == second
    assert spent(gw, account) == first + second


def test_image_models_are_listed_and_serve_only_their_endpoints(gw: Gateway) -> None:
    key = gw.key(gw.account("1.00"))
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{gw.url}/v1/models/{DALL_E_3}", headers=headers).json()
    assert listed["architecture"]["modality"] == "text+image->image"
    assert listed["pricing"]["image"] == "0.04" and listed["pricing"]["units"]["image/1024x1792/hd"] == "0.12"
    as_chat = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": DALL_E_3, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert as_chat.status_code == 400 and "is a image model" in as_chat.json()["error"]["message"]


@pytest.mark.parametrize("model", ["dall-e-2", "dall-e-3", "gpt-image-1"])
def test_the_sdk_parses_every_sim_answer(sim: Sim, model: str) -> None:
    client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-sim-direct", max_retries=0)
    made = client.images.generate(model=model, prompt="A quiet harbour")
    assert len(made.data) == 1 and (made.data[0].url or made.data[0].b64_json)
    if model == "gpt-image-1":
        assert made.usage is not None and made.usage.output_tokens == 1056 and made.size == "1024x1024"
        assert made.usage.total_tokens == made.usage.input_tokens + 1056
    else:
        assert made.usage is None
    if model != "dall-e-3":
        edited = client.images.edit(model=model, image=("a.png", PNG, "image/png"), prompt="Add a boat")
        assert len(edited.data) == 1
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model=model, prompt="x", size="7x7")


def test_an_edit_over_the_body_limit_is_413_before_it_is_read(
    tmp_path_factory: pytest.TempPathFactory, sim: Sim
) -> None:
    small = new_gateway(tmp_path_factory.mktemp("images-413"), sim)
    small.env["NEMO_MAX_BODY_BYTES"] = "4096"
    small.start()
    try:
        account = small.account("5.00")
        client = small.openai(small.key(account))
        before = len(sim.requests())
        with pytest.raises(openai.APIStatusError) as refused:
            client.images.edit(model=DALL_E_2, image=("a.png", PNG + b"\0" * 5000, "image/png"), prompt="x")
        assert refused.value.status_code == 413
        assert len(sim.requests()) == before
        fits = client.images.with_raw_response.edit(
            model=DALL_E_2, image=("a.png", PNG, "image/png"), prompt="x"
        )
        assert Decimal(fits.headers["x-nemo-cost"]) == Decimal("0.02") == spent(small, account)
        assert small.verify()["ok"] is True
    finally:
        assert small.stop() == 0
