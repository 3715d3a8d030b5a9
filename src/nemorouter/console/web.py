"""The console's request plumbing: templates, sessions, CSRF checks, forms and error pages.

Every page goes through `page`: it loads the session from its cookie (only the token's hash is
looked up), sends a signed-out browser to the sign-in page, checks the CSRF token of every
POST before the handler runs, and turns the service layer's errors into HTML pages with the
same status the APIs would give (another account's id is a 404 page).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nemorouter.console import money
from nemorouter.console.security import SECURITY_HEADERS, SESSION_COOKIE, same, token_hash
from nemorouter.errors import NemoError
from nemorouter.service import audit
from nemorouter.service.container import Services
from nemorouter.store.base import StoreError
from nemorouter.store.console_records import ConsoleSession
from nemorouter.timeutil import iso
from nemorouter.web.body import read_body
from nemorouter.web.state import services_of
from nemorouter.web.throttle import AuthThrottle

log = logging.getLogger("nemorouter.console")
MAX_FORM_BYTES = 64 * 1024
PREFIX = "/console"

templates = Environment(
    loader=PackageLoader("nemorouter.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _pico(value: Any) -> int:
    """An amount in a template: an int of pico-USD or a view's `Usd`."""
    return int(getattr(value, "pico", value))


templates.filters["cents"] = lambda v: money.cents(_pico(v))
templates.filters["exact"] = lambda v: money.exact(_pico(v))
templates.filters["when"] = lambda v: (v or "")[:19].replace("T", " ")


@dataclass
class Ctx:
    """What a page handler gets: the services, who is signed in, and the POSTed form."""

    request: Request
    services: Services
    session: ConsoleSession
    form: dict[str, str]

    @property
    def account_id(self) -> str:
        assert self.session.user is not None
        return self.session.user.account_id


Handler = Callable[[Ctx], Awaitable[Response]]


def secure(response: Response, *, private: bool = True) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if private:
        response.headers["cache-control"] = "no-store"
    return response


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    body = templates.get_template(name).render(prefix=PREFIX, path=request.url.path, **context)
    return secure(HTMLResponse(body, status_code=status))


def redirect(path: str) -> Response:
    """Post/redirect/get: 303 to a console path."""
    return secure(RedirectResponse(PREFIX + path, status_code=303))


def error_page(
    request: Request, status: int, message: str, session: ConsoleSession | None = None
) -> Response:
    titles = {403: "Refused", 404: "Not found", 429: "Too many attempts"}
    return render(
        request,
        "error.html",
        status=status,
        title=titles.get(status, "Cannot do that"),
        message=message,
        session=session,
    )


async def read_form(request: Request, services: Services) -> dict[str, str]:
    raw = await read_body(request, min(MAX_FORM_BYTES, services.settings.max_body_bytes))
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        return {}


async def current_session(request: Request, services: Services) -> ConsoleSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    found = await services.store.get_console_session(token_hash(token), iso(services.clock()))
    if found is not None and found.operator and not same(found.granted_by, operator_grant(services)):
        return None  # signed in with an admin token that is no longer the operator's
    return found


def operator_grant(services: Services) -> str | None:
    """What an operator session is bound to: a hash of the current admin token's hash."""
    current = services.admin_token_hash
    return token_hash("operator:" + current) if current else None


def page(*, operator: bool = False) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A customer page (a signed-in user; ctx.account_id scopes every lookup) or an operator page."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            services = services_of(request)
            session = await current_session(request, services)
            if session is None:
                if request.method == "POST":
                    return error_page(request, 403, "Your session has ended: sign in again.")
                return redirect("/login")
            if session.operator != operator:
                if request.method == "POST":
                    return error_page(request, 403, "This form is not for this sign-in.", session)
                return redirect("/admin/accounts" if session.operator else "/overview")
            form: dict[str, str] = {}
            if request.method == "POST":
                form = await read_form(request, services)
                if not same(form.get("csrf"), session.csrf_token):
                    return error_page(request, 403, "The form's security token is missing or wrong.", session)
            # What this page changes is audited as its signed-in user (the operator: as the admin).
            audit.set_actor("admin" if session.user is None else f"console:{session.user.id}")
            try:
                return await handler(Ctx(request, services, session, form))
            except NemoError as exc:
                return error_page(request, exc.status, exc.message, session)
            except StoreError as exc:  # a refusal the store explains (safe to show)
                return error_page(request, 409, str(exc), session)

        return endpoint

    return wrap


SIGNIN_FAILURES_PER_ADDRESS = 30  # per minute, in a burst; then one every 2 s
SIGNIN_FAILURES_PER_EMAIL = 10  # per minute, in a burst; then one every 6 s


def signin_throttles(request: Request) -> tuple[AuthThrottle, AuthThrottle]:
    """Failed sign-ins, counted per client address and per email (or the operator) apart."""
    state = request.app.state
    found: tuple[AuthThrottle, AuthThrottle] | None = getattr(state, "console_signin_throttles", None)
    if found is None:
        found = (AuthThrottle(SIGNIN_FAILURES_PER_ADDRESS), AuthThrottle(SIGNIN_FAILURES_PER_EMAIL))
        state.console_signin_throttles = found
    return found
