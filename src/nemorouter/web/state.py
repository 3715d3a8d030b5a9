"""Where a request finds the services built in the lifespan."""

from __future__ import annotations

from starlette.requests import Request

from nemorouter.service.container import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
