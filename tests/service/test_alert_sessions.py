"""The alert outbox's two aiohttp sessions (service/alerting/outbox.py `_Sessions`): made at the
first delivery, and both closed at the end even if closing the first one fails."""

from __future__ import annotations

import pytest

from nemorouter.service.alerting.outbox import _Sessions


async def test_the_customers_session_is_closed_when_closing_the_operators_raises() -> None:
    sessions = _Sessions(allow_private=False)
    operator, customers = sessions.opened()
    assert sessions.opened() == (operator, customers)  # made once
    real_close = operator.close

    async def failing_close() -> None:
        await real_close()
        raise RuntimeError("connector failed to close")

    operator.close = failing_close  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="connector failed to close"):
        await sessions.close()
    assert operator.closed and customers.closed
    await sessions.close()  # closed already: nothing left to close, no error
