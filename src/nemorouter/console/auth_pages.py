"""Signing in and out, and the set-password page an invite link opens.

A customer signs in with email and password (argon2id); the operator with the admin token.
Failed sign-ins are throttled per client address and per email. The session token lives in
the `nemo_session` cookie: HttpOnly, SameSite=Lax, Secure whenever the request came over
HTTPS (directly, or through a proxy in NEMO_TRUSTED_PROXIES that sets X-Forwarded-Proto), so that the
console also works over plain HTTP on loopback, as in the tests and `make run`.
"""

from __future__ import annotations

import math
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from nemorouter.console.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    hash_password,
    new_token,
    password_ok,
    password_problem,
    same,
    token_hash,
)
from nemorouter.console.web import (
    PREFIX,
    current_session,
    error_page,
    operator_grant,
    read_form,
    redirect,
    render,
    signin_throttles,
)
from nemorouter.timeutil import iso
from nemorouter.web.state import services_of


def _secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_csrf(request: Request) -> tuple[str, bool]:
    """The pre-session double-submit token: the browser's, or a new one (to be set)."""
    existing = request.cookies.get(LOGIN_CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return new_token(), True


def _with_login_csrf(request: Request, response: Response, token: str, fresh: bool) -> Response:
    if fresh:
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=3600,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=_secure_cookie(request),
        )
    return response


def _form_page(request: Request, name: str, status: int = 200, **context: object) -> Response:
    token, fresh = _login_csrf(request)
    return _with_login_csrf(
        request, render(request, name, status=status, csrf=token, **context), token, fresh
    )


async def login(request: Request) -> Response:
    services = services_of(request)
    if request.method == "GET":
        session = await current_session(request, services)
        if session is not None:
            return redirect("/admin/accounts" if session.operator else "/overview")
        return _form_page(request, "login.html")
    form = await read_form(request, services)
    if not same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return error_page(request, 403, "The form's security token is missing or wrong: reload the page.")
    operator = form.get("mode") == "operator"
    email = "" if operator else form.get("email", "").strip().lower()
    address = request.client.host if request.client else "unknown"
    by_address, by_email = signin_throttles(request)
    # The admin token cannot be guessed, and a lock on "the operator" would let anyone lock the
    # operator out: its failures count per address only. A user's count per address and email.
    who = None if operator else f"email:{email}"
    wait = by_address.retry_after(address) or (by_email.retry_after(who) if who else None)
    if wait is not None:
        response = error_page(request, 429, "Too many failed sign-ins: wait a little and try again.")
        response.headers["retry-after"] = str(math.ceil(wait))
        return response
    user_id: str | None = None
    if operator:
        ok = services.admin_token_ok(form.get("token", "").strip())
    else:
        user = await services.store.get_console_user(email) if email else None
        ok = await password_ok(user.password_hash if user else None, form.get("password", ""))
        user_id = user.id if user is not None and ok else None
    if not ok:
        by_address.failed(address)
        if who is not None:
            by_email.failed(who)
        message = "That admin token is not right." if operator else "Wrong email or password."
        return _form_page(request, "login.html", status=401, error=message, email=email, operator=operator)
    return await _start_session(request, user_id, "/admin/accounts" if operator else "/overview")


async def _start_session(request: Request, user_id: str | None, to: str) -> Response:
    services = services_of(request)
    token = new_token()
    now = services.clock()
    expires = now + timedelta(seconds=SESSION_SECONDS)
    grant = operator_grant(services) if user_id is None else None
    await services.store.create_console_session(
        token_hash(token), user_id, new_token(), iso(expires), iso(now), granted_by=grant
    )
    response = redirect(to)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=_secure_cookie(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


async def logout(request: Request) -> Response:
    services = services_of(request)
    session = await current_session(request, services)
    if session is not None:
        form = await read_form(request, services)
        if not same(form.get("csrf"), session.csrf_token):
            return error_page(request, 403, "The form's security token is missing or wrong.", session)
        await services.store.delete_console_session(token_hash(request.cookies[SESSION_COOKIE]))
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def invite(request: Request) -> Response:
    """The set-password page of an invite link; the invite is spent when the password is set."""
    services = services_of(request)
    token = request.path_params["token"]
    now = iso(services.clock())
    user = await services.store.console_invite_open(token_hash(token), now) if len(token) < 200 else None
    if user is None:
        return error_page(request, 404, "This link is unknown, used or expired: ask for a new invite.")
    if request.method == "GET":
        return _form_page(request, "set_password.html", email=user.email, token=token)
    form = await read_form(request, services)
    if not same(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return error_page(request, 403, "The form's security token is missing or wrong: reload the page.")
    password = form.get("password", "")
    problem = password_problem(password)
    if problem is None and password != form.get("confirm", ""):
        problem = "the two passwords differ"
    if problem is not None:
        return _form_page(
            request, "set_password.html", status=400, email=user.email, token=token, error=problem
        )
    used = await services.store.use_console_invite(token_hash(token), await hash_password(password), now)
    if used is None:
        return error_page(request, 404, "This link was used meanwhile: ask for a new invite.")
    return await _start_session(request, used.id, "/overview")
