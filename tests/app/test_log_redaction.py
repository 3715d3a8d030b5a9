"""Every log line passes one filter that removes anything shaped like a secret."""

from __future__ import annotations

import io
import json
import logging

from nemorouter.logs import JsonFormatter, RedactSecrets
from nemorouter.service.keyformat import new_key


def _logged(emit: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    emit(logger)  # type: ignore[operator]
    return json.loads(stream.getvalue())  # type: ignore[no-any-return]


def test_secrets_in_messages_extras_args_and_tracebacks_are_redacted() -> None:
    key = new_key("inference")
    mgmt = new_key("management")
    provider = "sk-proj-abcdefghijklmnopqrstuvwx"
    google = "AIzaSyA-abcdefghijklmnop"

    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError(f"bad key {provider}")
        except ValueError:
            logger.exception(
                "calling with %s and Authorization: Bearer %s",
                key,
                google,
                extra={"header": f"Bearer {mgmt}", "token": "nemo-admin-Zx9_secret", "model": "gpt-4o"},
            )

    entry = _logged(emit)
    text = json.dumps(entry)
    for secret in (key, mgmt, provider, google, "nemo-admin-Zx9_secret"):
        assert secret not in text
    assert entry["model"] == "gpt-4o"
    assert "[redacted]" in str(entry["msg"]) and "ValueError" in str(entry["exc"])
