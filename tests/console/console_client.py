"""A console user over plain HTTP (httpx, cookies kept): invites, sign-in, forms with CSRF."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

from conftest import Gateway

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def invite_link(gw: Gateway, account_id: str, email: str) -> str:
    made = gw.admin("POST", f"/accounts/{account_id}/invites", {"email": email})
    assert made.status_code == 201, made.text
    link: str = made.json()["data"]["link"]
    return link


class Browser:
    """Cookies and CSRF tokens as a browser keeps them (no redirects followed: tests see them)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.http = httpx.Client(base_url=gw.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict[str, str], *, csrf_from: str | None = None) -> httpx.Response:
        """POST a form; with `csrf_from`, the CSRF token is read from that page first."""
        if csrf_from is not None:
            data = {"csrf": csrf_of(self.get(csrf_from).text), **data}
        return self.http.post(path, data=data)

    def set_password(self, link: str, password: str = PASSWORD) -> httpx.Response:
        path = link.removeprefix(self.gw.url)
        page = self.get(path)
        assert page.status_code == 200, page.text
        return self.post(path, {"csrf": csrf_of(page.text), "password": password, "confirm": password})

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        page = self.get("/console/login")
        data = {"csrf": csrf_of(page.text), "mode": "user", "email": email, "password": password}
        return self.post("/console/login", data)

    def sign_in_operator(self, token: str) -> httpx.Response:
        page = self.get("/console/login")
        return self.post("/console/login", {"csrf": csrf_of(page.text), "mode": "operator", "token": token})


def new_user(gw: Gateway, credits: str = "5.00") -> tuple[str, str, Browser]:
    """An account with credits and a signed-in console user of it: (account id, email, browser)."""
    account_id = gw.account(credits, name=f"console-{secrets.token_hex(3)}")
    email = f"user-{secrets.token_hex(4)}@example.com"
    browser = Browser(gw)
    done = browser.set_password(invite_link(gw, account_id, email))
    assert done.status_code == 303 and done.headers["location"] == "/console/overview", done.text
    return account_id, email, browser
