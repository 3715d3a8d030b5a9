"""The console in a real browser: Playwright driving Debian's headless Chromium (never a browser
Playwright downloads). A customer signs in from an invite, makes a key, spends with it through
the openai SDK, sees the spend, downloads a statement, revokes the key; the operator grants
credits and quarantines a vault key. Every page is saved as a PNG in artifacts/screenshots/,
every request the pages make must go to the gateway itself, and a key named like a script is
shown as text everywhere without ever running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from console_client import invite_link

from conftest import Gateway, Sim, new_gateway

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "a long enough password"
MINI = "openai/gpt-4o-mini"
SCRIPT_NAME = "<script>alert(1)</script>"
# The console's own confirmation questions (data-confirm): the only dialogs a page may open.
CONFIRMS = ("Revoke this key for good?", "Quarantine this vault key? No request will use it.")

# `make test` installs Debian's chromium; only outside CI may a machine without it skip these.
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)


@pytest.fixture(scope="module")
def gw(workdir: Path, sim: Sim) -> Iterator[Gateway]:
    gateway = new_gateway(workdir, sim)
    # With Stripe configured, the billing page links to the operator's top-up page.
    gateway.env["NEMO_STRIPE_WEBHOOK_SECRET"] = "whsec_" + "c2VjcmV0LWZvci1jb25zb2xlLXRlc3Rz"
    gateway.env["NEMO_STRIPE_TOPUP_URL"] = "http://127.0.0.1:9/pay?account={account_id}"
    gateway.start()
    yield gateway
    assert gateway.stop() == 0


class Watch:
    """Every URL the pages asked for, and every dialog that was not one of our confirmations."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.bad_dialogs: list[str] = []

    def attach(self, context: Any) -> None:
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("page", self._page)

    def _page(self, page: Any) -> None:
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm" and dialog.message in CONFIRMS:
            dialog.accept()
        else:
            self.bad_dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    def check(self, origin: str) -> None:
        assert not self.bad_dialogs, self.bad_dialogs
        outside = [u for u in self.urls if not u.startswith(origin + "/")]
        assert self.urls and not outside, outside


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def context(chromium: Any, watch: Watch) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    watch.attach(ctx)
    yield ctx
    ctx.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def usd(cost: Decimal) -> str:
    return f"${cost.normalize():f}" if cost != cost.to_integral() else f"${cost}"


def spend(gw: Gateway, key: str, text: str, model: str = MINI) -> tuple[str, Decimal]:
    client = gw.openai(key)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=200
    )
    raw.parse()
    return raw.headers["x-nemo-request-id"], Decimal(raw.headers["x-nemo-cost"])


def test_a_customer_from_invite_to_revoked_key(
    gw: Gateway, context: Any, watch: Watch, tmp_path: Path
) -> None:
    account_id = gw.account("20.00", name="Acme Labs")
    link = invite_link(gw, account_id, "dev@acme.example")
    page = context.new_page()

    # Sign in from the invite: set a password, land on the overview.
    page.goto(link)
    shot(page, "set-password")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/overview")
    assert "$20.00" in page.inner_text("#balance")

    # A key with a limit: the secret is shown once, with a copy button.
    page.goto(f"{gw.url}/console/keys")
    page.fill("input[name=name]", "app-key")
    page.fill("input[name=limit]", "5.00")
    page.select_option("select[name=limit_reset]", "monthly")
    page.fill("input[name=rpm]", "600")
    page.click("form.grid-form button[type=submit]")
    secret = page.inner_text("#new-secret").strip()
    assert secret.startswith("sk-nemo-v1-")
    page.click("button.copy")
    shot(page, "keys-new-secret")
    page.goto(f"{gw.url}/console/keys")
    assert secret not in page.content() and "app-key" in page.inner_text("table.keys")

    # Traffic through the openai SDK, and the spend on the overview and in the activity log.
    first_id, first_cost = spend(gw, secret, "Hello from the console test")
    _, second_cost = spend(gw, secret, "And a second one, on a dearer model. " * 20, model="openai/gpt-4o")
    page.goto(f"{gw.url}/console/overview")
    total = first_cost + second_cost
    assert page.get_attribute("#spend-month .money", "title") == usd(total)
    assert page.locator("svg.chart rect").count() >= 1
    assert "app-key" in page.inner_text("main")
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the same page, reflowed
    shot(page, "overview-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(f"{gw.url}/console/activity")
    assert usd(first_cost) in page.inner_text("table.activity")
    shot(page, "activity")
    page.click(f"a[href='/console/activity/{first_id}']")
    page.wait_for_url(f"**/console/activity/{first_id}")
    assert page.inner_text("#exact-cost") == usd(first_cost)
    shot(page, "activity-detail")

    # This month's statement, downloaded as PDF and CSV.
    page.goto(f"{gw.url}/console/billing")
    assert page.get_attribute("a.button", "href") == f"http://127.0.0.1:9/pay?account={account_id}"
    shot(page, "billing")
    with page.expect_download() as pdf:
        page.locator("a", has_text="PDF").first.click()
    saved = tmp_path / pdf.value.suggested_filename
    pdf.value.save_as(saved)
    assert saved.suffix == ".pdf" and saved.read_bytes().startswith(b"%PDF")
    with page.expect_download() as csv:
        page.locator("a", has_text="CSV").first.click()
    text = Path(csv.value.path()).read_text()
    assert str(total.normalize()) in text or format(total, "f") in text

    page.goto(f"{gw.url}/console/settings")
    shot(page, "settings")

    # Revoke the key (after the confirmation): the next request is refused.
    page.goto(f"{gw.url}/console/keys")
    page.locator("tr", has_text="app-key").locator("button", has_text="Revoke").click()
    page.wait_for_url("**/console/keys?done=revoked")
    assert "revoked" in page.locator("tr", has_text="app-key").inner_text()
    with pytest.raises(openai.AuthenticationError):
        spend(gw, secret, "refused now")
    watch.check(gw.url)


def test_a_key_named_like_a_script_is_only_text(gw: Gateway, context: Any, watch: Watch) -> None:
    account_id = gw.account("5.00", name="Escapes")
    page = context.new_page()
    page.goto(invite_link(gw, account_id, "xss@acme.example"))
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/overview")
    page.goto(f"{gw.url}/console/keys")
    page.fill("input[name=name]", SCRIPT_NAME)
    page.click("form.grid-form button[type=submit]")
    secret = page.inner_text("#new-secret").strip()
    generation_id, _ = spend(gw, secret, "hi")
    for path in (
        "/console/keys",
        "/console/overview",
        "/console/activity",
        f"/console/activity/{generation_id}",
    ):
        page.goto(gw.url + path)
        assert page.get_by_text(SCRIPT_NAME, exact=True).count() >= 1, path
        assert SCRIPT_NAME not in page.content()  # only ever as &lt;script&gt;
    watch.check(gw.url)


def test_the_operator_grants_credits_and_quarantines_a_vault_key(
    gw: Gateway, context: Any, watch: Watch
) -> None:
    account_id = gw.account("1.00", name="Granted Inc")
    page = context.new_page()
    page.goto(f"{gw.url}/console/login")
    shot(page, "login")
    page.click("details summary")
    page.fill("input[name=token]", gw.admin_token)
    page.click("text=Sign in as operator")
    page.wait_for_url("**/console/admin/accounts")

    row = page.locator("tr", has_text=account_id)
    row.locator("input[name=amount]").fill("7.50")
    row.locator("input[name=reason]").fill("pilot credit")
    row.locator("button", has_text="Grant").click()
    page.wait_for_url("**/console/admin/accounts?done=credited")
    assert "$8.50" in page.locator("tr", has_text=account_id).inner_text()
    shot(page, "admin-accounts")

    page.goto(f"{gw.url}/console/admin/providers")
    key_row = page.locator("tr", has_text="main")
    fingerprint = key_row.locator("code").inner_text()
    assert fingerprint and "sk-sim" not in page.content()  # fingerprints only, never the secret
    key_row.locator("button", has_text="Quarantine").click()
    page.wait_for_url("**/console/admin/providers?done=quarantine")
    assert "quarantined" in page.locator("tr", has_text="main").inner_text()
    shot(page, "admin-providers")
    keys = gw.admin("GET", "/providers/sim").json()["data"]["keys"]
    assert keys[0]["quarantined_at"] is not None

    for name in ("models", "reconciliation", "ledger"):
        page.goto(f"{gw.url}/console/admin/{name}")
        assert page.locator("h1").count() == 1
        shot(page, f"admin-{name}")
    assert "Every invariant holds" in page.inner_text("#ledger-status")
    # Release it again, so the gateway serves on (and the button works both ways).
    page.goto(f"{gw.url}/console/admin/providers")
    page.locator("tr", has_text="main").locator("button", has_text="Release").click()
    page.wait_for_url("**/console/admin/providers?done=release")
    assert gw.admin("GET", "/providers/sim").json()["data"]["keys"][0]["quarantined_at"] is None
    watch.check(gw.url)
