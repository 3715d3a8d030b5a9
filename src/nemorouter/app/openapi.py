"""The OpenAPI 3 document of the HTTP APIs (served at /openapi.json; a test keeps it in step with
the routes). Shapes are summarized: CONTRACT.md is the full description."""

from __future__ import annotations

from html import escape
from typing import Any

MONEY = {"type": "number", "description": "USD, an exact decimal literal (never rounded through a float)"}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "type", "message"],
            "properties": {
                "code": {"type": "integer"},
                "type": {"type": "string"},
                "message": {"type": "string"},
            },
        }
    },
}
OBJECT = {"type": "object", "additionalProperties": True}

# (method, path, security, summary, has a body, success status); a body is JSON unless
# `_REQUESTS` names its media.
OPERATIONS: list[tuple[str, str, str, str, bool, int]] = [
    ("get", "/", "none", "The web console (redirects to /console/; its pages are HTML)", False, 303),
    ("get", "/healthz", "none", "Alive", False, 200),
    (
        "get",
        "/readyz",
        "none",
        "Ready: the database (and Redis, when configured) answers; else 503",
        False,
        200,
    ),
    ("get", "/openapi.json", "none", "This document", False, 200),
    ("get", "/docs", "none", "This document as a readable page (HTML, served whole: no scripts)", False, 200),
    ("get", "/metrics", "none", "Prometheus metrics (bearer NEMO_METRICS_TOKEN when set)", False, 200),
    (
        "post",
        "/v1/chat/completions",
        "inference",
        "OpenAI-compatible chat completion (stream or not)",
        True,
        200,
    ),
    ("post", "/v1/embeddings", "inference", "OpenAI-compatible embeddings", True, 200),
    ("post", "/v1/moderations", "inference", "OpenAI-compatible moderations", True, 200),
    (
        "post",
        "/v1/rerank",
        "inference",
        "Rerank documents (Cohere/Jina shape; Voyage upstreams too)",
        True,
        200,
    ),
    ("post", "/v1/images/generations", "inference", "OpenAI-compatible image generation", True, 200),
    (
        "post",
        "/v1/images/edits",
        "inference",
        "OpenAI-compatible image edits (multipart/form-data: image files, mask, fields)",
        True,
        200,
    ),
    (
        "post",
        "/v1/audio/speech",
        "inference",
        "OpenAI-compatible text to speech (audio bytes out)",
        True,
        200,
    ),
    (
        "post",
        "/v1/audio/transcriptions",
        "inference",
        "OpenAI-compatible transcription (multipart form in)",
        True,
        200,
    ),
    (
        "post",
        "/v1/audio/translations",
        "inference",
        "OpenAI-compatible translation to English (multipart form in)",
        True,
        200,
    ),
    ("post", "/v1/messages", "inference", "Anthropic-compatible Messages API, for every model", True, 200),
    ("post", "/v1/responses", "inference", "OpenAI Responses API (stateless), for every model", True, 200),
    (
        "post",
        "/v1/messages/count_tokens",
        "inference",
        "A Messages prompt's input tokens, for any model; free",
        True,
        200,
    ),
    ("get", "/v1/models", "none", "Servable models with prices per token", False, 200),
    ("get", "/v1/models/{model_id}", "none", "One servable model (ids contain `/`)", False, 200),
    ("get", "/v1/key", "inference", "The calling key: limits, usage per window, rate limits", False, 200),
    ("get", "/v1/generation", "inference", "One request's exact record (`?id=`)", False, 200),
    (
        "get",
        "/v1/generations",
        "inference",
        "Recent requests (own key; whole account for a management key)",
        False,
        200,
    ),
    (
        "post",
        "/v1/leaks",
        "none",
        "Report leaked strings; live keys among them are revoked (always 202)",
        True,
        202,
    ),
    ("get", "/v1/leaks", "management", "Leak events of the account", False, 200),
    ("put", "/v1/alerts", "management", "Set the account's signed webhook for alerts", True, 200),
    ("get", "/v1/alerts", "management", "The account's webhook and its latest deliveries", False, 200),
    ("post", "/webhooks/stripe", "none", "Stripe events (signed): paid Checkout credits", True, 200),
    ("get", "/v1/credits", "management", "Credits, usage, balance, held", False, 200),
    (
        "get",
        "/v1/usage",
        "management",
        "Usage by day, model, key or provider (`?from&to&group_by`)",
        False,
        200,
    ),
    (
        "get",
        "/v1/statements/{month}",
        "management",
        "The month's statement (json, csv, html, pdf)",
        False,
        200,
    ),
    ("get", "/v1/keys", "management", "The account's inference keys", False, 200),
    ("post", "/v1/keys", "management", "Create an inference key (the secret is returned once)", True, 201),
    ("get", "/v1/keys/{key_id}", "management", "One key", False, 200),
    (
        "patch",
        "/v1/keys/{key_id}",
        "management",
        "Change a key's name, limits, expiry, models, disabled",
        True,
        200,
    ),
    ("delete", "/v1/keys/{key_id}", "management", "Revoke a key (permanent)", False, 200),
    (
        "post",
        "/v1/keys/{key_id}/rotate",
        "management",
        "New secret, same key; the old one works for a grace",
        True,
        201,
    ),
    (
        "get",
        "/admin/v1/providers",
        "admin",
        "Providers with vault keys (fingerprints) and health",
        False,
        200,
    ),
    ("post", "/admin/v1/providers", "admin", "Add a provider", True, 201),
    ("get", "/admin/v1/providers/{name}", "admin", "One provider", False, 200),
    (
        "post",
        "/admin/v1/providers/{name}/keys",
        "admin",
        "Add a vault key (the secret is never returned)",
        True,
        201,
    ),
    (
        "patch",
        "/admin/v1/providers/{name}/keys/{key_id}",
        "admin",
        "Disable, reweight, quarantine or release",
        True,
        200,
    ),
    ("delete", "/admin/v1/providers/{name}/keys/{key_id}", "admin", "Delete a vault key", False, 200),
    ("get", "/admin/v1/models", "admin", "Models and deployments", False, 200),
    ("post", "/admin/v1/models", "admin", "Create or replace a model", True, 201),
    ("post", "/admin/v1/models/import", "admin", "Deploy a vendor's catalog models on a provider", True, 201),
    ("get", "/admin/v1/models/{model_id}", "admin", "One model", False, 200),
    ("patch", "/admin/v1/models/{model_id}", "admin", "Change a model", True, 200),
    ("delete", "/admin/v1/models/{model_id}", "admin", "Delete a model", False, 200),
    ("get", "/admin/v1/accounts", "admin", "Accounts", False, 200),
    ("post", "/admin/v1/accounts", "admin", "Create an account", True, 201),
    ("get", "/admin/v1/accounts/{account_id}", "admin", "One account with balance", False, 200),
    ("patch", "/admin/v1/accounts/{account_id}", "admin", "Rename; account-wide rate limits", True, 200),
    ("post", "/admin/v1/accounts/{account_id}/credits", "admin", "Credit (idempotent by key)", True, 201),
    ("get", "/admin/v1/accounts/{account_id}/keys", "admin", "An account's keys", False, 200),
    ("post", "/admin/v1/accounts/{account_id}/keys", "admin", "Create an inference key", True, 201),
    (
        "post",
        "/admin/v1/accounts/{account_id}/invites",
        "admin",
        "Invite a console user: a one-time set-password link",
        True,
        201,
    ),
    (
        "post",
        "/admin/v1/accounts/{account_id}/management-keys",
        "admin",
        "Create a management key",
        True,
        201,
    ),
    ("get", "/admin/v1/keys/{key_id}", "admin", "Any key", False, 200),
    ("patch", "/admin/v1/keys/{key_id}", "admin", "Change any key", True, 200),
    ("delete", "/admin/v1/keys/{key_id}", "admin", "Revoke any key", False, 200),
    ("post", "/admin/v1/keys/{key_id}/rotate", "admin", "Rotate any key", True, 201),
    ("get", "/admin/v1/ledger/verify", "admin", "Check every ledger invariant", False, 200),
    (
        "get",
        "/admin/v1/audit",
        "admin",
        "The audit log of admin and management actions (`?actor&action&account_id&target&from&to&limit`)",
        False,
        200,
    ),
    ("get", "/admin/v1/audit/verify", "admin", "Check the audit log's hash chain", False, 200),
    (
        "get",
        "/admin/v1/reconciliation",
        "admin",
        "Per provider key and day: requests, tokens, list-price cost",
        False,
        200,
    ),
]

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "none": [],
    "inference": [{"inferenceKey": []}],
    "management": [{"managementKey": []}],
    "admin": [{"operatorToken": []}],
}


_BINARY = {"type": "string", "format": "binary"}
# Bodies that are not JSON: the image edits' and audio routes' multipart forms in, and the audio
# routes' answers out.
_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file", "model"],
            "properties": {"file": _BINARY, "model": {"type": "string"}},
            "additionalProperties": True,
        }
    }
}
_IMAGE_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["image", "prompt"],
            "properties": {"image": _BINARY, "mask": _BINARY, "prompt": {"type": "string"}},
            "additionalProperties": True,
        }
    }
}
_TRANSCRIPT = {"application/json": {"schema": OBJECT}, "text/plain": {"schema": {"type": "string"}}}
_REQUESTS = {
    "/v1/images/edits": _IMAGE_FORM,
    "/v1/audio/transcriptions": _FORM,
    "/v1/audio/translations": _FORM,
}
_ANSWERS: dict[str, dict[str, Any]] = {
    "/v1/audio/speech": {"audio/*": {"schema": _BINARY}},
    "/v1/audio/transcriptions": _TRANSCRIPT,
    "/v1/audio/translations": _TRANSCRIPT,
}


def extra_operations() -> list[tuple[str, str, str, str, bool, int]]:
    """Operations registered by optional parts (kept here so the document stays one list)."""
    return []


def document(version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, security, summary, has_body, status in [*OPERATIONS, *extra_operations()]:
        operation: dict[str, Any] = {
            "summary": summary,
            "security": _SECURITY[security],
            "responses": {
                str(status): {
                    "description": "OK",
                    "content": _ANSWERS.get(path, {"application/json": {"schema": OBJECT}}),
                },
                "default": {"description": "Error", "content": {"application/json": {"schema": ERROR}}},
            },
        }
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in params
            ]
        if has_body:
            content = _REQUESTS.get(path, {"application/json": {"schema": OBJECT}})
            operation["requestBody"] = {"required": True, "content": content}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NemoRouter",
            "version": version,
            "description": "One key, one bill, every model. Money is USD as exact decimal literals.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "Money": MONEY},
            "securitySchemes": {
                "inferenceKey": {"type": "http", "scheme": "bearer", "description": "sk-nemo-v1-..."},
                "managementKey": {"type": "http", "scheme": "bearer", "description": "sk-nemo-mgmt-v1-..."},
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "NEMO_ADMIN_TOKEN"},
            },
        },
    }


_AUTH_NAMES = {
    "inferenceKey": "inference key",
    "managementKey": "management key",
    "operatorToken": "operator token",
}


def docs_html(doc: dict[str, Any]) -> str:
    """The document as one plain HTML page, rendered here: nothing loaded from anywhere, no
    script or style (it passes the console's Content-Security-Policy as it is)."""
    info = doc["info"]
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info['title'])} API {escape(info['version'])}</title></head><body>",
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info['description'])}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Every error is'
        " <code>{&quot;error&quot;: {&quot;code&quot;, &quot;type&quot;, &quot;message&quot;}}</code>"
        " with the HTTP status as <code>code</code>. Credentials: <code>Authorization: Bearer ...</code>.</p>",
        "<table><thead><tr><th>method</th><th>path</th><th>credentials</th><th>body</th><th>success</th>"
        "<th>what it does</th></tr></thead><tbody>",
    ]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            auth = ", ".join(_AUTH_NAMES.get(name, name) for req in operation["security"] for name in req)
            success = next(code for code in operation["responses"] if code != "default")
            out.append(
                f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
                f"<td>{escape(auth or 'none')}</td><td>{'JSON' if 'requestBody' in operation else ''}</td>"
                f"<td>{escape(success)}</td><td>{escape(operation['summary'])}</td></tr>"
            )
    out.append("</tbody></table></body></html>")
    return "".join(out)
