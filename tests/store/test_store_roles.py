"""The store's roles (`store.roles`): every method of `Store` belongs to exactly one role, and both
backends implement every role, each method a coroutine function on both."""

from __future__ import annotations

import inspect

import pytest

from nemorouter.store import roles
from nemorouter.store.base import Store
from nemorouter.store.console_records import ConsoleStore
from nemorouter.store.postgres import PostgresStore
from nemorouter.store.sqlite import SqliteStore

ROLES = [
    cls
    for _, cls in inspect.getmembers(roles, inspect.isclass)
    if cls.__module__ == roles.__name__ and cls.__name__.endswith("Store")
] + [ConsoleStore]


def methods(protocol: type) -> set[str]:
    return {name for name, value in vars(protocol).items() if inspect.iscoroutinefunction(value)}


def test_every_method_has_exactly_one_role() -> None:
    assert len(ROLES) == 10
    owned = [name for role in ROLES for name in methods(role)]
    assert len(owned) == len(set(owned))  # no method in two roles
    everything = {name for cls in Store.__mro__ if cls is not object for name in methods(cls)}
    assert set(owned) == everything
    assert not methods(Store)  # Store adds nothing of its own: it is the union


@pytest.mark.parametrize("backend", [SqliteStore, PostgresStore])
@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_each_backend_implements_each_role(backend: type, role: type) -> None:
    for name in methods(role):
        assert inspect.iscoroutinefunction(getattr(backend, name, None)), f"{backend.__name__}.{name}"
