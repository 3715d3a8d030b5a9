"""The usage API and the monthly statement on a running gateway: traffic through the official
`openai` SDK on several keys and two models, a credit added in between, then every grouping,
every format (JSON, CSV, HTML, PDF) and the CLI checked against hand-computed figures."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest

from conftest import NEMOROUTER, Gateway

MINI, GPT4O = "openai/gpt-4o-mini", "openai/gpt-4o"
# Bundled list prices, USD per 1M tokens (src/nemorouter/data/catalog.csv): input, output.
PRICES = {MINI: (Decimal("0.15"), Decimal("0.6")), GPT4O: (Decimal("2.5"), Decimal("10"))}
HTTP = httpx.Client(timeout=30)


def hand_cost(model: str, prompt: int, completion: int) -> Decimal:
    inp, out = PRICES[model]
    return (prompt * inp + completion * out) / 10**6


def exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def literals(text: str) -> Any:
    """JSON with every fractional number kept as its literal text (what a renderer must show)."""
    return json.loads(text, parse_float=str)


def money_text(value: Any) -> str:
    return value if isinstance(value, str) else f"{value}.0"


@dataclass
class Call:
    key_id: str
    model: str
    prompt: int
    completion: int
    cost: Decimal


@dataclass
class Tenant:
    gw: Gateway
    id: str
    mgmt: str
    keys: dict[str, str] = field(default_factory=dict)  # key id -> secret
    calls: list[Call] = field(default_factory=list)

    def get(self, path: str, key: str | None = None, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.mgmt}"}
        return HTTP.get(f"{self.gw.url}{path}", params=params, headers=headers)

    def new_key(self, name: str) -> str:
        made = self.gw.admin("POST", f"/accounts/{self.id}/keys", {"name": name})
        assert made.status_code == 201, made.text
        self.keys[made.json()["data"]["id"]] = made.json()["key"]
        return str(made.json()["data"]["id"])

    def chat(self, key_id: str, model: str, text: str, *, stream: bool = False) -> None:
        client = self.gw.openai(self.keys[key_id])
        messages = [{"role": "user", "content": text}]
        if stream:
            usage = None
            for chunk in client.chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True}
            ):
                usage = chunk.usage or usage
            assert usage is not None
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            cost = hand_cost(model, prompt, completion)
        else:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
            wire = exact(raw.http_response.text)["usage"]
            prompt, completion = wire["prompt_tokens"], wire["completion_tokens"]
            cost = hand_cost(model, prompt, completion)
            assert wire["cost"] == cost == Decimal(raw.headers["x-nemo-cost"])
        assert prompt > 0 and completion > 0
        self.calls.append(Call(key_id, model, prompt, completion, cost))

    def credits(self) -> dict[str, Decimal]:
        found: dict[str, Decimal] = exact(self.get("/v1/credits").text)["data"]
        return found


def new_tenant(gw: Gateway, credits: str) -> Tenant:
    account_id = gw.account(credits, name="billing")
    return Tenant(gw, account_id, gw.management_key(account_id))


@dataclass
class Billed:
    tenant: Tenant
    other: Tenant
    month: str
    today: str


@pytest.fixture(scope="module")
def billed(gateway: Gateway) -> Iterator[Billed]:
    month = datetime.now(UTC).strftime("%Y-%m")
    tenant = new_tenant(gateway, "10.00")
    first, second = tenant.new_key("first"), tenant.new_key("second")
    tenant.new_key("idle")  # a key without traffic has no usage row
    tenant.chat(first, MINI, "Hello there, how are you?")
    tenant.chat(first, GPT4O, "Tell me something short")
    tenant.chat(second, MINI, "A streamed answer please", stream=True)
    credited = gateway.admin("POST", f"/accounts/{tenant.id}/credits", {"amount": "2.5", "reason": "top-up"})
    assert credited.status_code == 201, credited.text
    tenant.chat(second, GPT4O, "One more, on the big model")
    tenant.chat(first, MINI, "And the last one")

    other = new_tenant(gateway, "3.00")
    theirs = other.new_key("theirs")
    other.chat(theirs, GPT4O, "Someone else's request")
    if datetime.now(UTC).strftime("%Y-%m") != month:
        pytest.skip("the month changed while the traffic ran")
    yield Billed(tenant, other, month, datetime.now(UTC).strftime("%Y-%m-%d"))
    HTTP.close()


def test_usage_groupings_sum_exactly_to_total_usage(billed: Billed) -> None:
    tenant = billed.tenant
    total = sum((c.cost for c in tenant.calls), Decimal(0))
    assert tenant.credits()["total_usage"] == total
    prompt = sum(c.prompt for c in tenant.calls)
    completion = sum(c.completion for c in tenant.calls)
    for group_by in ("day", "model", "key", "provider"):
        resp = tenant.get("/v1/usage", group_by=group_by)  # the default range: this month
        assert resp.status_code == 200, resp.text
        data = exact(resp.text)["data"]
        assert all(isinstance(g["cost"], (int, Decimal)) and not isinstance(g["cost"], bool) for g in data)
        assert sum((g["cost"] for g in data), Decimal(0)) == total, group_by
        assert sum(g["requests"] for g in data) == len(tenant.calls) == 5
        assert sum(g["prompt_tokens"] for g in data) == prompt
        assert sum(g["completion_tokens"] for g in data) == completion
        assert all(
            {"group", "requests", "prompt_tokens", "completion_tokens", "cost"} <= set(g) for g in data
        )

    by_model = {g["group"]: g for g in exact(tenant.get("/v1/usage", group_by="model").text)["data"]}
    assert set(by_model) == {MINI, GPT4O}
    for model, group in by_model.items():
        calls = [c for c in tenant.calls if c.model == model]
        assert group["requests"] == len(calls)
        assert group["cost"] == sum((c.cost for c in calls), Decimal(0))
        assert group["prompt_tokens"] == sum(c.prompt for c in calls)

    by_key = {g["group"]: g for g in exact(tenant.get("/v1/usage", group_by="key").text)["data"]}
    assert set(by_key) == {c.key_id for c in tenant.calls}  # key ids; the idle key has no row
    for key_id, group in by_key.items():
        assert group["cost"] == sum((c.cost for c in tenant.calls if c.key_id == key_id), Decimal(0))
    assert [g["group"] for g in exact(tenant.get("/v1/usage", group_by="provider").text)["data"]] == ["sim"]
    assert [g["group"] for g in exact(tenant.get("/v1/usage", group_by="day").text)["data"]] == [billed.today]

    # An explicit range: today alone; tomorrow has nothing.
    day = datetime.strptime(billed.today, "%Y-%m-%d").date()
    after = (day + timedelta(days=1)).isoformat()
    only_today = exact(tenant.get("/v1/usage", **{"from": billed.today, "to": after}).text)
    assert sum((g["cost"] for g in only_today["data"]), Decimal(0)) == total
    later = (day + timedelta(days=2)).isoformat()
    assert exact(tenant.get("/v1/usage", **{"from": after, "to": later}).text)["data"] == []


def test_usage_csv(billed: Billed) -> None:
    resp = billed.tenant.get("/v1/usage", group_by="model", format="csv")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["group"] for r in rows} == {MINI, GPT4O}
    assert sum(Decimal(r["cost"]) for r in rows) == billed.tenant.credits()["total_usage"]
    assert sum(int(r["requests"]) for r in rows) == 5


BAD_USAGE_QUERIES = (
    "from=2026-02-30 from=yesterday to=2026-1-01 from=2026-03-02&to=2026-03-02 group_by=week format=xml"
)


def test_usage_bad_input_is_400(billed: Billed) -> None:
    for query in [*BAD_USAGE_QUERIES.split(), "from=2026-03-05&to=2026-03-01"]:
        resp = billed.tenant.get("/v1/usage", **dict(p.split("=") for p in query.split("&")))
        assert resp.status_code == 400, (query, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request"


def _statement(billed: Billed, tenant: Tenant | None = None, fmt: str | None = None) -> httpx.Response:
    params = {"format": fmt} if fmt else {}
    resp = (tenant or billed.tenant).get(f"/v1/statements/{billed.month}", **params)
    assert resp.status_code == 200, resp.text
    return resp


def test_statement_json_identity_holds_exactly(billed: Billed) -> None:
    tenant = billed.tenant
    st = exact(_statement(billed).text)["data"]
    assert st["account_id"] == tenant.id and st["month"] == billed.month
    assert st["opening_balance"] == 0  # the account is new this month
    assert [(c["amount"], c["reason"]) for c in st["credits"]] == [
        (Decimal("10.00"), "test"),
        (Decimal("2.5"), "top-up"),
    ]
    assert all(c["at"].startswith(billed.today) and c["at"].endswith("Z") for c in st["credits"])
    assert st["total_credits"] == Decimal("12.5")
    total = sum((c.cost for c in tenant.calls), Decimal(0))
    assert st["total_usage"] == total == sum((line["cost"] for line in st["lines"]), Decimal(0))
    assert st["opening_balance"] + st["total_credits"] - st["total_usage"] == st["closing_balance"]
    account = tenant.credits()
    assert st["closing_balance"] == account["balance"] == Decimal("12.5") - total
    assert st["total_credits"] == account["total_credits"] and st["total_usage"] == account["total_usage"]

    lines = {(line["model"], line["provider"]): line for line in st["lines"]}
    assert set(lines) == {(MINI, "sim"), (GPT4O, "sim")}  # one price each this month: one line each
    for (model, _), line in lines.items():
        calls = [c for c in tenant.calls if c.model == model]
        assert line["requests"] == len(calls)
        assert line["prompt_tokens"] == sum(c.prompt for c in calls)
        assert line["completion_tokens"] == sum(c.completion for c in calls)
        assert line["cost"] == sum((c.cost for c in calls), Decimal(0))
        inp, out = PRICES[model]
        assert (Decimal(line["unit_prices"]["input"]), Decimal(line["unit_prices"]["output"])) == (inp, out)
    keys = {k["key_id"]: k["cost"] for k in st["keys"]}
    assert keys == {
        key_id: sum((c.cost for c in tenant.calls if c.key_id == key_id), Decimal(0))
        for key_id in {c.key_id for c in tenant.calls}
    }


def test_statement_csv_totals_equal_json(billed: Billed) -> None:
    st = literals(_statement(billed).text)["data"]
    resp = _statement(billed, fmt="csv")
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert "amount" in rows[0]
    totals = {r["type"]: r["amount"] for r in rows if r["type"] not in ("usage", "credit")}
    for name in ("opening_balance", "total_credits", "total_usage", "closing_balance"):
        assert Decimal(totals[name]) == Decimal(money_text(st[name])), name
    usage = [r for r in rows if r["type"] == "usage"]
    assert sorted((r["model"], Decimal(r["amount"])) for r in usage) == sorted(
        (line["model"], Decimal(money_text(line["cost"]))) for line in st["lines"]
    )
    assert sum(Decimal(r["amount"]) for r in usage) == Decimal(totals["total_usage"])


def test_statement_html_shows_the_totals(billed: Billed) -> None:
    st = literals(_statement(billed).text)["data"]
    resp = _statement(billed, fmt="html")
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    for name in ("opening_balance", "total_credits", "total_usage", "closing_balance"):
        assert money_text(st[name]) in page, name
    for line in st["lines"]:
        assert money_text(line["cost"]) in page
    assert billed.tenant.id in page
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered and "<script" not in lowered
    assert "<link" not in lowered and "src=" not in lowered and "@import" not in lowered


def test_statement_pdf_opens_and_shows_the_totals(billed: Billed, tmp_path: Path) -> None:
    st = literals(_statement(billed).text)["data"]
    resp = _statement(billed, fmt="pdf")
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF-")
    path = tmp_path / "statement.pdf"
    path.write_bytes(resp.content)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
    for name in ("opening_balance", "total_credits", "total_usage", "closing_balance"):
        assert money_text(st[name]) in text, name
    for line in st["lines"]:
        assert line["model"] in text and money_text(line["cost"]) in text
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        return  # no renderer on this machine: the PDF still opened and read back above
    subprocess.run(
        [pdftoppm, "-png", "-r", "50", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    pngs = sorted(tmp_path.glob("page*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 0
    assert pngs[0].read_bytes().startswith(b"\x89PNG")


def test_statement_of_a_quiet_month_and_bad_requests(billed: Billed) -> None:
    quiet = billed.tenant.get("/v1/statements/2020-01")
    assert quiet.status_code == 200, quiet.text
    data = exact(quiet.text)["data"]
    assert (data["opening_balance"], data["total_credits"], data["total_usage"], data["closing_balance"]) == (
        0,
        0,
        0,
        0,
    )
    assert data["credits"] == [] and data["lines"] == []
    now = datetime.now(UTC)
    future = f"{now.year + (now.month == 12)}-{now.month % 12 + 1:02d}"
    for month, fmt in [*((m, "json") for m in (future, "2026-13", "2026-3", "march")), (billed.month, "xml")]:
        resp = billed.tenant.get(f"/v1/statements/{month}", format=fmt)
        assert resp.status_code == 400, (month, fmt, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request"


def test_isolation_and_key_kinds(billed: Billed) -> None:
    tenant, other = billed.tenant, billed.other
    theirs = exact(_statement(billed, other).text)["data"]
    assert theirs["account_id"] == other.id
    assert theirs["total_usage"] == other.calls[0].cost and theirs["total_credits"] == Decimal("3.00")
    assert [line["model"] for line in theirs["lines"]] == [GPT4O]
    their_keys = {g["group"] for g in exact(other.get("/v1/usage", group_by="key").text)["data"]}
    assert their_keys == {other.calls[0].key_id}
    assert not their_keys & set(tenant.keys)
    for page in (_statement(billed, other, "html").text, _statement(billed, other, "csv").text):
        assert tenant.id not in page and not any(k in page for k in tenant.keys)

    inference = next(iter(tenant.keys.values()))
    for path in ("/v1/usage", f"/v1/statements/{billed.month}"):
        refused = tenant.get(path, key=inference)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "forbidden"
        anonymous = HTTP.get(f"{tenant.gw.url}{path}")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "invalid_key"


def test_cli_usage_and_statement(billed: Billed, tmp_path: Path) -> None:
    gw, tenant = billed.tenant.gw, billed.tenant
    by_model = exact(gw.cli("usage", tenant.id, "--group-by", "model").stdout)
    assert by_model == exact(tenant.get("/v1/usage", group_by="model").text)
    st = exact(gw.cli("statement", tenant.id, "--month", billed.month).stdout)
    api = exact(_statement(billed).text)
    assert {k: v for k, v in st["data"].items() if k != "generated_at"} == {
        k: v for k, v in api["data"].items() if k != "generated_at"
    }

    out = tmp_path / "cli.pdf"
    written = exact(
        gw.cli(
            "statement", tenant.id, "--month", billed.month, "--format", "pdf", "--output", str(out)
        ).stdout
    )
    assert written["data"]["output"] == str(out) and written["data"]["bytes"] == out.stat().st_size
    text = pypdf.PdfReader(out).pages[0].extract_text()
    assert money_text(literals(_statement(billed).text)["data"]["closing_balance"]) in text
    # Standard output that is not a terminal takes the PDF's bytes.
    piped = subprocess.run(
        [*NEMOROUTER, "statement", tenant.id, "--month", billed.month, "--format", "pdf"],
        env=gw.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert piped.stdout.startswith(b"%PDF-")
    # On a terminal, a PDF needs --output: never binary on a screen.
    screen, tty = pty.openpty()
    try:
        refused = subprocess.run(
            [*NEMOROUTER, "statement", tenant.id, "--month", billed.month, "--format", "pdf"],
            env=gw.env,
            stdout=tty,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(screen)
        os.close(tty)
    assert refused.returncode != 0 and b"--output" in refused.stderr
    csv_text = gw.cli("statement", tenant.id, "--month", billed.month, "--format", "csv").stdout
    assert csv_text.startswith("type,") and "closing_balance" in csv_text

    for args in (
        ("statement", tenant.id, "--month", "2026-13"),
        ("statement", tenant.id, "--month", billed.month, "--format", "docx"),
        ("statement", "acct_nope", "--month", billed.month),
        ("usage", tenant.id, "--group-by", "week"),
        ("usage", tenant.id, "--from", "someday"),
        ("usage", "acct_nope"),
    ):
        failed = gw.cli(*args, check=False)
        assert failed.returncode != 0, args
        assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, failed.stderr
        assert failed.stdout == ""
