"""A provider's `config` object as the admin API takes it: checked, then stored as plain JSON."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.providers.bedrock import REGION

_TIMEOUT_NAMES = ("connect", "first_byte", "idle", "total")
# GCP project ids (6-30 of a-z, 0-9, -) and Vertex locations (`us-central1`, `global`, `eu`):
# both go into the request path, so nothing else is let in.
_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_GCP_REGION = re.compile(r"[a-z][a-z0-9-]{1,40}")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def provider_config(value: Any, kind: str) -> dict[str, Any]:
    """A provider's settings, checked: `timeouts` (seconds: connect, first_byte, idle, total),
    `responses_api` (a boolean, for the OpenAI kinds: providers/openai_responses.py), `region`
    (required for kind bedrock) and `sts_url` (bedrock: where its keys' roles are assumed), and
    `project` and `region` (required for kind vertex)."""
    if not isinstance(value, dict):
        raise InvalidRequest("`config` must be an object")
    config = dict(value)
    flag = config.get("responses_api")
    if flag is not None and (kind not in ("openai", "openai-compatible") or not isinstance(flag, bool)):
        raise InvalidRequest("`config.responses_api` is a boolean, for kinds openai and openai-compatible")
    if kind == "bedrock":  # the region signs every request and names the default endpoint
        region = config.get("region")
        if not isinstance(region, str) or REGION.fullmatch(region) is None:
            raise InvalidRequest(
                "`config.region` is required for kind bedrock: an AWS region such as us-east-1"
            )
    sts = config.get("sts_url")
    if sts is not None and (
        kind != "bedrock" or not isinstance(sts, str) or _URL.fullmatch(sts) is None or len(sts) > 2048
    ):
        raise InvalidRequest("`config.sts_url` is for kind bedrock: an http(s) URL of an STS endpoint")
    if kind == "vertex":
        _vertex(config)
    timeouts = config.get("timeouts")
    if timeouts is not None:
        if not isinstance(timeouts, dict) or set(timeouts) - set(_TIMEOUT_NAMES):
            raise InvalidRequest(f"`config.timeouts` may set {', '.join(_TIMEOUT_NAMES)} (seconds)")
        checked = {}
        for name, seconds in timeouts.items():
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, (int, Decimal))
                or not 0 < seconds <= 3600
            ):
                raise InvalidRequest(f"`config.timeouts.{name}` must be a number of seconds from 0 to 3600")
            checked[name] = float(seconds)  # a duration, not money
        config["timeouts"] = checked
    plain: dict[str, Any] = _plain(config)
    return plain


def _vertex(config: dict[str, Any]) -> None:
    """Vertex addresses a model inside a GCP project and location (providers/vertex.py)."""
    project, region = config.get("project"), config.get("region")
    if not isinstance(project, str) or not _GCP_PROJECT.fullmatch(project):
        raise InvalidRequest("`config.project` is required for kind vertex: the GCP project id")
    if not isinstance(region, str) or not _GCP_REGION.fullmatch(region):
        raise InvalidRequest(
            "`config.region` is required for kind vertex: a Vertex AI location (e.g. us-central1, global)"
        )


def _plain(value: Any) -> Any:
    """JSON-safe copy: exact decimals parsed from the body become floats (config holds no money)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
