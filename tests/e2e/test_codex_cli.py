"""Codex CLI (`codex exec`, npm @openai/codex pinned in clients/package.json) pointed at the
gateway only through its documented settings (a `model_providers` entry in `$CODEX_HOME/config.toml`
with `wire_api = "responses"`), on the simulator's OpenAI-, Anthropic- and Gemini-format upstreams:
it prints the model's answer and exits 0, runs the shell command the model calls for and sends its
output back, every request is charged exactly what its usage costs at the listed prices, and the
ledger verifies.

What Codex sends is sent unchanged: its built-in `web_search` tool (left out, named in
`x-nemo-omitted`), its `namespace` tool group (flattened for chat upstreams), `store: false`,
`include: ["reasoning.encrypted_content"]`, `prompt_cache_key` and `client_metadata`; a recording
relay checks those and validates every event Codex received against the openai SDK's types.
Claude's thinking goes back upstream through the encrypted reasoning items Codex returns, and
`--output-schema` (a `text.format` beside Codex's tools) reaches every upstream format.

The npm launcher (`bin/codex.js`) runs the native binary of the platform package npm installs
beside it (an optional dependency); `npm ci --ignore-scripts` installs it as it is. Hermetic: the
config turns off update checks, analytics, feedback, OpenTelemetry and the plugin marketplace
(which otherwise clones from github.com and calls chatgpt.com at start), and every proxy variable
points at a recording listener, so any request for anywhere but the gateway fails the test.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from test_messages_current_clients import ALL, three_formats

from conftest import Gateway, Sim
from nemorouter.sim.content import VOCABULARY

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "clients" / "node_modules"
LAUNCHER = MODULES / ".bin" / "codex"
# The platform package the launcher looks for, and the target triple its binary is filed under.
TARGETS = {
    ("Linux", "x86_64"): ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    ("Linux", "aarch64"): ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
    ("Darwin", "x86_64"): ("codex-darwin-x64", "x86_64-apple-darwin"),
    ("Darwin", "arm64"): ("codex-darwin-arm64", "aarch64-apple-darwin"),
}


def codex_installed() -> bool:
    target = TARGETS.get((platform.system(), platform.machine()))
    if target is None or not LAUNCHER.exists():
        return False
    package, triple = target
    return (MODULES / "@openai" / package / "vendor" / triple / "bin" / "codex").is_file()


if not codex_installed():
    if os.environ.get("CI"):
        raise RuntimeError("Codex CLI is not installed: run `npm ci --ignore-scripts --prefix clients`")
    pytest.skip(
        "Codex CLI is not installed (npm ci --ignore-scripts --prefix clients)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sim: Sim) -> Iterator[Gateway]:
    gateway = three_formats(Path(tmp_path_factory.mktemp("codex-cli")), sim)
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


class Outbound:
    """A listener every proxy variable points at: each connection to it is a request Codex tried
    to send somewhere other than the gateway (which NO_PROXY exempts). The kernel completes the
    handshakes and queues them; `attempts()` takes what is queued, after Codex has exited."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def attempts(self) -> list[bytes]:
        seen = []
        self.server.settimeout(0.2)
        while True:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                return seen
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(200))
                except OSError:
                    seen.append(b"(nothing sent)")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def outbound() -> Iterator[Outbound]:
    listener = Outbound()
    yield listener
    listener.close()


# --json: events on stdout; --strict-config: refuse a config key this version does not know (so
# none of the settings below is silently ignored); no git repository; no session files kept.
FLAGS = ("--json", "--strict-config", "--skip-git-repo-check", "--ephemeral")
CONFIG = """\
model = "{model}"
model_provider = "nemorouter"
# Offline and quiet: no update check, analytics, feedback uploads or OpenTelemetry export.
check_for_update_on_startup = false

[model_providers.nemorouter]
name = "NemoRouter"
base_url = "{url}/v1"
env_key = "NEMOROUTER_API_KEY"
wire_api = "responses"
# A failure must show, not be retried into a pass.
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

# The plugin marketplace clones from github.com and calls chatgpt.com at every start.
[features]
plugins = false
"""


def run_codex(
    gw: Gateway,
    key: str,
    model: str,
    prompt: str,
    home: Path,
    outbound: Outbound,
    base_url: str = "",
    options: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`codex exec --json` with the gateway as its model provider; its events, after checking it
    exited 0 and tried to reach nothing else. `options` are more of its own (`-c key=value`, `--output-schema FILE`)."""
    codex_home = home / "codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, url=base_url or gw.url))
    work = home / "work"
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "NEMOROUTER_API_KEY": key,
        "NO_PROXY": "127.0.0.1,localhost",
        **{name: outbound.url for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")},
    }
    done = subprocess.run(
        [
            str(LAUNCHER),
            "exec",
            *FLAGS,
            *options,
            "-C",
            str(work),
            prompt,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tried = outbound.attempts()
    assert tried == [], f"Codex tried to reach more than the gateway: {tried}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


class Relay:
    """A recording relay in front of the gateway: each request is forwarded as it came and kept
    with the gateway's answer, so a test can check the bytes Codex sent and received."""

    def __init__(self, target: str) -> None:
        self.exchanges: list[tuple[dict[str, Any], httpx.Response]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = httpx.post(target + self.path, content=body, headers=headers, timeout=60)
                relay.exchanges.append((json.loads(body), answer))
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in {
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    }:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def generations(gw: Gateway, key: str) -> list[dict[str, Any]]:
    """The key's generation records (the request log), with costs as exact decimals."""
    found = httpx.get(f"{gw.url}/v1/generations", headers={"Authorization": f"Bearer {key}"})
    assert found.status_code == 200, found.text
    data: list[dict[str, Any]] = json.loads(found.text, parse_float=Decimal)["data"]
    return data


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def answer_of(events: list[dict[str, Any]]) -> str:
    """The last agent message: what `codex exec` prints as the model's answer."""
    messages = items(events, "agent_message")
    assert messages, events
    text: str = messages[-1]["text"]
    # The sim writes words of its fixed vocabulary: the printed text is its answer, relayed.
    assert text.strip() and set(text.replace(".", " ").split()) <= set(VOCABULARY)
    return text


def assert_charged_exactly(
    gw: Gateway, key: str, account: str, model: str, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every request Codex made succeeded; each was charged its usage at the listed prices; the
    account's usage is their sum; the tokens Codex counted are the tokens billed."""
    made = generations(gw, key)
    assert made and all(g["status"] == "success" and g["model"] == model for g in made)
    for generation in made:
        assert generation["total_cost"] == gw.list_price(key, model, generation["tokens"]) > 0
    charged = sum(g["total_cost"] for g in made)
    balance = gw.balance(account)
    assert Decimal(str(balance["total_usage"])) == charged
    assert balance["held"] == 0
    assert gw.verify()["ok"] is True
    (turn,) = [e for e in events if e["type"] == "turn.completed"]
    assert turn["usage"]["input_tokens"] == sum(g["tokens"]["prompt"] for g in made)
    assert turn["usage"]["output_tokens"] == sum(g["tokens"]["completion"] for g in made)
    return made


def upstream(sim: Sim, marker: str) -> list[dict[str, Any]]:
    """The bodies the sim received that carry `marker`, oldest first."""
    return [r["body"] for r in sim.requests() if marker in json.dumps(r.get("body"))]


def tool_names(body: dict[str, Any]) -> set[str]:
    """The function names an upstream body offers, in each wire format."""
    names = set()
    for tool in body.get("tools") or []:
        if "function" in tool:  # OpenAI chat
            names.add(tool["function"]["name"])
        elif "name" in tool:  # Anthropic
            names.add(tool["name"])
        for declaration in tool.get("functionDeclarations") or []:  # Gemini
            names.add(declaration["name"])
    return names


@pytest.mark.parametrize("model", ALL)
def test_codex_answers_through_the_gateway(
    gw: Gateway, sim: Sim, model: str, tmp_path: Path, outbound: Outbound
) -> None:
    """One turn: Codex offers its tools; the sim is told to answer with text."""
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"codex-{model}"
    events = run_codex(
        gw, key, model, f"Say hello to the gateway {marker} [sim: tool=none]", tmp_path, outbound
    )
    answer_of(events)
    assert items(events, "command_execution") == []
    assert len(assert_charged_exactly(gw, key, account, model, events)) == 1
    (sent,) = upstream(sim, marker)
    offered = tool_names(sent)
    # Codex's shell tool and its namespaced group reached the model; its web_search was left out.
    assert "exec_command" in offered and any("__" in name for name in offered)
    assert not any("web_search" in name for name in offered)


@pytest.mark.parametrize("model", ALL)
def test_codex_runs_a_shell_command_through_the_gateway(
    gw: Gateway, sim: Sim, model: str, tmp_path: Path, outbound: Outbound
) -> None:
    """Two requests: the sim calls Codex's `exec_command` (with a command made of its words),
    Codex runs it in its sandbox and sends the output back, and the answer to that is printed."""
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"codex-tool-{model}"
    events = run_codex(
        gw, key, model, f"List the files here {marker} [sim: tool=exec_command]", tmp_path, outbound
    )
    (command,) = items(events, "command_execution")
    assert command["exit_code"] is not None and command["aggregated_output"]
    answer_of(events)
    assert len(assert_charged_exactly(gw, key, account, model, events)) == 2
    first, second = upstream(sim, marker)
    # The command's output went back to the model in the second request, not the first.
    output = json.dumps(command["aggregated_output"].strip())[1:-1]
    assert output not in json.dumps(first) and output in json.dumps(second)


@pytest.mark.parametrize("model", ALL)
def test_what_codex_sends_is_served_as_the_openai_sdk_types_say(
    gw: Gateway, model: str, tmp_path: Path, outbound: Outbound
) -> None:
    """Through a recording relay: Codex's requests carry what the front door must take and never
    refuse (`store: false`, encrypted reasoning, `prompt_cache_key`, `client_metadata`, a
    `namespace` group, `web_search`), the gateway names what it left out, and every event Codex
    received validates strictly against the openai SDK's own event types."""
    account = gw.account("5.00")
    key = gw.key(account)
    relay = Relay(gw.url)
    try:
        prompt = f"List the files here codex-relay-{model} [sim: tool=exec_command]"
        events = run_codex(gw, key, model, prompt, tmp_path, outbound, base_url=relay.url)
    finally:
        relay.close()
    answer_of(events)
    assert len(relay.exchanges) == 2
    finals = []
    for sent, answer in relay.exchanges:
        assert sent["stream"] is True and sent["store"] is False
        assert sent["include"] == ["reasoning.encrypted_content"]
        assert sent["prompt_cache_key"] and isinstance(sent["client_metadata"], dict)
        assert {"function", "namespace", "web_search"} <= {tool["type"] for tool in sent["tools"]}
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-nemo-omitted"] == "tools.web_search"
        frames = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
        parsed = [EVENT.validate_python(frame, strict=True) for frame in frames]
        assert [event.sequence_number for event in parsed] == list(range(len(parsed)))
        assert parsed[0].type == "response.created" and parsed[-1].type == "response.completed"
        finals.append(parsed[-1].response)
    # The first answer called exec_command; the second request sent its output back under the call's id.
    (call,) = [item for item in finals[0].output if item.type == "function_call"]
    assert call.name == "exec_command"
    returned = [i for i in relay.exchanges[1][0]["input"] if i.get("type") == "function_call_output"]
    assert [i["call_id"] for i in returned] == [call.call_id]
    assert [item.type for item in finals[1].output] == ["message"]
    assert_charged_exactly(gw, key, account, model, events)


def test_codex_sends_claude_thinking_back_through_encrypted_reasoning(
    gw: Gateway, sim: Sim, tmp_path: Path, outbound: Outbound
) -> None:
    """Codex asks for `reasoning.encrypted_content` and sends reasoning items back as it got them:
    on an Anthropic-format upstream that thinks, the thinking blocks (signatures and all) of the
    turn that called the tool go back upstream with its result, as Anthropic requires."""
    model = "anthropic/claude-sonnet-4-5"
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"codex-thinking-{model}"
    options = ("-c", 'model_reasoning_effort="high"', "-c", 'model_reasoning_summary="detailed"')
    prompt = f"List the files here {marker} [sim: reasoning=30 tool=exec_command]"
    events = run_codex(gw, key, model, prompt, tmp_path, outbound, options=options)
    assert len(items(events, "reasoning")) == 2 and len(items(events, "command_execution")) == 1
    answer_of(events)
    assert len(assert_charged_exactly(gw, key, account, model, events)) == 2
    first, second = upstream(sim, marker)
    assert first["thinking"]["type"] == "enabled"  # the effort, as Anthropic's thinking control
    (called,) = [m for m in second["messages"] if m["role"] == "assistant"]
    kinds = [block["type"] for block in called["content"]]
    assert kinds[0] == "thinking" and "tool_use" in kinds
    assert called["content"][0]["signature"]


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
# Where each upstream format received Codex's `--output-schema` (with Codex's tools beside it).
SCHEMA_AT: dict[str, Any] = {
    "openai/gpt-4o-mini": lambda body: body["response_format"]["json_schema"]["schema"],
    "anthropic/claude-sonnet-4-5": lambda body: body["output_config"]["format"]["schema"],
    "google/gemini-2.5-flash": lambda body: body["generationConfig"]["responseJsonSchema"],
}


@pytest.mark.parametrize("model", ALL)
def test_codex_output_schema_answers_json_of_the_schema(
    gw: Gateway, sim: Sim, model: str, tmp_path: Path, outbound: Outbound
) -> None:
    """`codex exec --output-schema FILE` sends the schema as `text.format` beside its tools; every
    upstream gets it in its own form with the tools still offered, and the answer is that JSON."""
    account = gw.account("5.00")
    key = gw.key(account)
    marker = f"codex-schema-{model}"
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps(CITY))
    prompt = f"Name a city {marker} [sim: tool=none]"
    events = run_codex(gw, key, model, prompt, tmp_path, outbound, options=("--output-schema", str(schema)))
    (message,) = items(events, "agent_message")
    answer = json.loads(message["text"])
    assert set(answer) == {"city", "population"} and isinstance(answer["population"], int)
    assert len(assert_charged_exactly(gw, key, account, model, events)) == 1
    (sent,) = upstream(sim, marker)
    assert SCHEMA_AT[model](sent) == CITY and "exec_command" in tool_names(sent)
