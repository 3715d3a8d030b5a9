"""The sim's Vertex AI routes, parsed by the official clients: google-genai with `vertexai=True`
and anthropic's `AnthropicVertex`, both authenticated by google-auth with a service account whose
`token_uri` is the sim's token endpoint (the JWT-bearer grant, verified against its public key)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from google import genai
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.genai import types
from google.oauth2 import service_account

from service_accounts import ServiceAccount, accept, issued_tokens, new_account

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
FLASH = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
HELLO = "Hello, world!"
HELLO_PROMPT = 3 + 3 + 4  # priming + one turn's overhead + its text (the Gemini wire's count)


def credentials(account: ServiceAccount) -> service_account.Credentials:
    made: service_account.Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        account.info, scopes=SCOPES
    )
    return made


@pytest.fixture(scope="module")
def account(sim_url: str) -> ServiceAccount:
    made = new_account(sim_url)
    accept(sim_url, made)
    return made


@pytest.fixture(scope="module")
def gclient(sim_url: str, account: ServiceAccount) -> Iterator[genai.Client]:
    client = genai.Client(
        vertexai=True,
        project="nemo-test",
        location="us-central1",
        credentials=credentials(account),
        http_options=types.HttpOptions(base_url=sim_url, timeout=10_000),
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def claude(sim_url: str, account: ServiceAccount) -> Iterator[anthropic.AnthropicVertex]:
    client = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="nemo-test",
        credentials=credentials(account),
        base_url=f"{sim_url}/v1",
        max_retries=0,
        timeout=10,
    )
    yield client
    client.close()


def test_gemini_on_vertex_whole_and_stream(gclient: genai.Client, sim_url: str) -> None:
    whole = gclient.models.generate_content(model=FLASH, contents=HELLO)
    assert whole.text and whole.candidates and whole.candidates[0].finish_reason == types.FinishReason.STOP
    u = whole.usage_metadata
    assert u is not None and u.prompt_token_count == HELLO_PROMPT
    assert u.candidates_token_count == len(whole.text.split())
    chunks = list(gclient.models.generate_content_stream(model=FLASH, contents=HELLO))
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert chunks[-1].usage_metadata == whole.usage_metadata
    seen = [r for r in httpx.get(f"{sim_url}/_sim/requests").json() if "publishers/google" in r["path"]]
    assert (
        seen[-2]["path"]
        == f"/v1beta1/projects/nemo-test/locations/us-central1/publishers/google/models/{FLASH}:generateContent"
    )
    assert seen[-1]["path"].endswith(f"/{FLASH}:streamGenerateContent") and seen[-1]["query"] == "alt=sse"
    assert seen[-1]["authorization"].removeprefix("Bearer ") in issued_tokens(sim_url)


def test_gemini_on_vertex_tool_call(gclient: genai.Client) -> None:
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters=types.Schema(
            type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
        ),
    )
    reply = gclient.models.generate_content(
        model=FLASH,
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[weather])]),
    )
    assert reply.function_calls and reply.function_calls[0].name == "get_weather"


def test_claude_on_vertex_whole_stream_and_tools(claude: anthropic.AnthropicVertex, sim_url: str) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": HELLO}]
    )
    assert message.type == "message" and message.stop_reason == "end_turn" and message.model == CLAUDE
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == len(
        message.content[0].text.split()
    )
    with claude.messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": HELLO}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == message.content[0].text and final.usage.output_tokens == message.usage.output_tokens
    tool = {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    called = claude.messages.create(
        model=CLAUDE,
        max_tokens=256,
        tools=[tool],
        messages=[{"role": "user", "content": "Weather in Paris?"}],  # type: ignore[list-item]
    )
    assert called.stop_reason == "tool_use" and any(b.type == "tool_use" for b in called.content)
    seen = [r for r in httpx.get(f"{sim_url}/_sim/requests").json() if "publishers/anthropic" in r["path"]]
    path = f"/v1/projects/nemo-test/locations/us-east5/publishers/anthropic/models/{CLAUDE}"
    assert [r["path"] for r in seen[-3:]] == [
        f"{path}:rawPredict",
        f"{path}:streamRawPredict",
        f"{path}:rawPredict",
    ]
    assert (
        "model" not in seen[-1]["body"] and seen[-1]["body"]["anthropic_version"]
    )  # the SDK sends its own version


def test_unaccepted_account_gets_invalid_grant(sim_url: str) -> None:
    stranger = new_account(sim_url, "stranger")  # never accepted: its key verifies nothing
    with pytest.raises(RefreshError) as refused:
        credentials(stranger).refresh(Request())
    assert "invalid_grant" in str(refused.value) and refused.value.retryable is False


def test_a_key_that_is_not_the_accounts_is_refused(sim_url: str, account: ServiceAccount) -> None:
    forged = new_account(sim_url)
    impostor = ServiceAccount(account.email, forged.private_key, forged.public_key, account.token_uri)
    client = genai.Client(
        vertexai=True,
        project="nemo-test",
        location="us-central1",
        credentials=credentials(impostor),
        http_options=types.HttpOptions(base_url=sim_url, timeout=10_000),
    )
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        client.models.generate_content(model=FLASH, contents=HELLO)


def test_routes_refuse_missing_unknown_and_expired_tokens(sim_url: str) -> None:
    short = new_account(sim_url, "short")
    accept(sim_url, short, lifetime=1)
    creds = credentials(short)
    creds.refresh(Request())
    url = f"{sim_url}/v1/projects/p/locations/us-central1/publishers/google/models/{FLASH}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": HELLO}]}]}
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {creds.token}"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer ya29.made-up"}, {"x-goog-api-key": "sk-sim-test"}):
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    time.sleep(1.1)
    expired = httpx.post(url, json=body, headers={"Authorization": f"Bearer {creds.token}"})
    assert expired.status_code == 401
    claude_url = url.replace("publishers/google", "publishers/anthropic").replace(
        f"{FLASH}:generateContent", "claude-x:rawPredict"
    )
    assert httpx.post(claude_url, json={}, headers={}).json()["error"]["status"] == "UNAUTHENTICATED"


def test_token_endpoint_down_is_retryable(sim_url: str) -> None:
    down = new_account(sim_url, "down")
    accept(sim_url, down, status=503)
    with pytest.raises(RefreshError) as failed:
        credentials(down).refresh(Request())
    assert failed.value.retryable is True


def test_claude_body_rules(sim_url: str, account: ServiceAccount) -> None:
    creds = credentials(account)
    creds.refresh(Request())
    token = creds.token
    url = f"{sim_url}/v1/projects/p/locations/us-east5/publishers/anthropic/models/{CLAUDE}:rawPredict"
    base = {"max_tokens": 16, "messages": [{"role": "user", "content": HELLO}]}
    auth = {"Authorization": f"Bearer {token}"}
    assert (
        httpx.post(url, json={**base, "anthropic_version": "vertex-2023-10-16"}, headers=auth).status_code
        == 200
    )
    assert httpx.post(url, json=base, headers=auth).status_code == 400  # no anthropic_version
    with_model = {**base, "anthropic_version": "vertex-2023-10-16", "model": CLAUDE}
    assert httpx.post(url, json=with_model, headers=auth).status_code == 400
