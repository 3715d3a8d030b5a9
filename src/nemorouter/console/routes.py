"""The console's routes: `GET /` and everything under /console (mounted by the app)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from nemorouter.console import auth_pages, customer, operator
from nemorouter.console.security import SECURITY_HEADERS
from nemorouter.console.web import current_session, error_page, redirect
from nemorouter.web.state import services_of


async def home(request: Request) -> Response:
    session = await current_session(request, services_of(request))
    if session is None:
        return redirect("/login")
    return redirect("/admin/accounts" if session.operator else "/overview")


async def not_found(request: Request) -> Response:
    return error_page(request, 404, "There is no such page.")


class _Static:
    """The package's static files, with the console's security headers (cacheable: no data)."""

    def __init__(self) -> None:
        self.files = StaticFiles(packages=[("nemorouter.console", "static")])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.files(scope, receive, with_headers)


KEY = "/keys/{key_id}/{action:str}"
pages: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/login", auth_pages.login, methods=["GET", "POST"]),
    Route("/logout", auth_pages.logout, methods=["POST"]),
    Route("/invite/{token}", auth_pages.invite, methods=["GET", "POST"]),
    Route("/overview", customer.overview, methods=["GET"]),
    Route("/keys", customer.keys, methods=["GET", "POST"]),
    Route(KEY, customer.key_action, methods=["POST"]),
    Route("/activity", customer.activity, methods=["GET"]),
    Route("/activity/{generation_id}", customer.generation, methods=["GET"]),
    Route("/billing", customer.billing, methods=["GET"]),
    Route("/billing/statements/{month}.{fmt}", customer.statement, methods=["GET"]),
    Route("/settings", customer.settings, methods=["GET", "POST"]),
    Route("/settings/management-keys", customer.management_keys, methods=["POST"]),
    Route("/settings/management-keys/{key_id}/revoke", customer.revoke_management_key, methods=["POST"]),
    Route("/admin/accounts", operator.accounts, methods=["GET"]),
    Route("/admin/accounts/{account_id}/credits", operator.grant, methods=["POST"]),
    Route("/admin/accounts/{account_id}/invites", operator.invite, methods=["POST"]),
    Route("/admin/providers", operator.providers, methods=["GET"]),
    Route("/admin/providers/{name}/keys", operator.add_provider_key, methods=["POST"]),
    Route("/admin/providers/{name}/keys/{key_id}/{action}", operator.provider_key_action, methods=["POST"]),
    Route("/admin/models", operator.models, methods=["GET"]),
    Route("/admin/reconciliation", operator.reconciliation, methods=["GET"]),
    Route("/admin/ledger", operator.ledger, methods=["GET"]),
    Mount("/static", app=_Static(), name="console-static"),
    Route("/{rest:path}", not_found, methods=["GET"]),
]


async def root(request: Request) -> Response:
    """`GET /`: the web console (CONTRACT.md)."""
    return redirect("/")


routes: list[BaseRoute] = [Route("/", root, methods=["GET"]), Mount("/console", routes=pages)]
