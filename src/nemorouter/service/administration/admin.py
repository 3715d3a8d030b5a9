"""Administration use cases: providers and their vault keys, models, accounts, credits, keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from nemorouter.errors import Conflict, InvalidRequest, NotFound
from nemorouter.money import LIMIT_RESETS, Prices, window_start
from nemorouter.money.amounts import AmountRangeError, MoneyFormatError
from nemorouter.providers import bedrock, vertex
from nemorouter.providers.registry import KINDS
from nemorouter.providers.vendors import VENDORS
from nemorouter.service import audit, fields
from nemorouter.service.administration import aliases, provider_secret
from nemorouter.service.administration.provider_config import provider_config
from nemorouter.service.administration.views import key_view
from nemorouter.service.alerting import alerts
from nemorouter.service.keyformat import display_hint, hash_key, new_key
from nemorouter.store.base import Store, StoreError
from nemorouter.store.records import Account, ApiKey, Credit, Model, Provider, ProviderKey
from nemorouter.timeutil import iso, new_id
from nemorouter.vault import Vault, fingerprint

# What a model serves: the chat front doors, `/v1/embeddings`, `/v1/moderations`, `/v1/rerank`,
# `/v1/images/generations` and `/edits`, `/v1/audio/speech`, or `/v1/audio/transcriptions` and
# `/translations`.
MODES = ("chat", "embedding", "moderation", "rerank", "image", "speech", "transcription")


class Admin:
    def __init__(self, store: Store, vault: Vault, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.vault = vault
        self.clock = clock

    async def _audit(
        self,
        action: str,
        *,
        account_id: str | None = None,
        targets: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Record a change just made, with whoever acts (see `service.administration.audit`); never a secret."""
        await audit.record(
            self.store, self.clock(), action, account_id=account_id, targets=targets, params=params
        )

    # -- providers ------------------------------------------------------------------------

    async def create_provider(self, body: dict[str, Any]) -> Provider:
        name = fields.text(body, "name", maximum=64)
        kind = body.get("kind")
        if kind not in KINDS:
            raise InvalidRequest(f"`kind` must be one of {', '.join(KINDS)}")
        config = provider_config(body.get("config") or {}, kind)
        vendor = body.get("vendor", config.get("vendor"))
        if vendor is not None:
            if kind != "openai-compatible" or vendor not in VENDORS:
                raise InvalidRequest(f"`vendor` is for kind openai-compatible, one of {', '.join(VENDORS)}")
            config["vendor"] = vendor
        if body.get("base_url") is None and vendor is not None:
            body = {**body, "base_url": VENDORS[vendor].base_url}
        if body.get("base_url") is None and kind == "bedrock":  # its region's endpoint
            body = {**body, "base_url": bedrock.default_base_url(config["region"])}
        elif body.get("base_url") is None and kind == "vertex":
            body = {**body, "base_url": vertex.default_base_url(config["region"])}
        base_url = fields.text(body, "base_url", maximum=500)
        assert name is not None and base_url is not None
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidRequest("`base_url` must be an http(s) URL")
        try:
            created = await self.store.create_provider(name, kind, base_url.rstrip("/"), config)
        except StoreError as exc:
            raise Conflict(str(exc)) from None
        await self._audit(
            "provider.create",
            targets={"provider_id": created.id},
            params={"name": name, "kind": kind, "base_url": created.base_url, "vendor": vendor},
        )
        return created

    async def provider(self, name: str) -> Provider:
        found = await self.store.get_provider(name)
        if found is None:
            raise NotFound(f"no provider {name}")
        return found

    async def add_provider_key(self, provider_name: str, body: dict[str, Any]) -> ProviderKey:
        provider = await self.provider(provider_name)
        secret = provider_secret.checked_secret(body.get("secret"), provider.kind)
        label = fields.text(body, "label", required=False, maximum=100) or "default"
        weight = fields.positive_int(body, "weight", 1)
        key_id = new_id("pk_", 8)
        envelope = self.vault.encrypt(provider.name, key_id, secret)
        added = await self.store.add_provider_key(
            provider.id, key_id, label, weight, fingerprint(secret), envelope
        )
        await self._audit(
            "provider_key.add",
            targets={"provider_id": provider.id, "provider_key_id": key_id},
            params={"label": label, "weight": weight, "fingerprint": added.fingerprint},
        )
        return added

    async def update_provider_key(self, provider_name: str, key_id: str, body: dict[str, Any]) -> ProviderKey:
        provider = await self.provider(provider_name)
        found = {k.id: k for k in await self.store.list_provider_keys(provider.id)}
        if key_id not in found:
            raise NotFound(f"no key {key_id} for provider {provider.name}")
        changes: dict[str, Any] = {}
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise InvalidRequest("`disabled` must be a boolean")
            changes["disabled"] = int(body["disabled"])
        if "weight" in body:
            changes["weight"] = fields.positive_int(body, "weight", 1)
        if "quarantined" in body:
            if not isinstance(body["quarantined"], bool):
                raise InvalidRequest("`quarantined` must be a boolean")
            # The operator may quarantine a key by hand (a suspected leak); an earlier time stays.
            since = found[key_id].quarantined_at or iso(self.clock())
            changes["quarantined_at"] = since if body["quarantined"] else None
        if not changes:
            raise InvalidRequest("nothing to change: send `disabled`, `weight` or `quarantined`")
        updated = await self.store.update_provider_key(key_id, changes)
        assert updated is not None
        await self._audit(
            "provider_key.update",
            targets={"provider_id": provider.id, "provider_key_id": key_id},
            params=changes,
        )
        return updated

    async def delete_provider_key(self, provider_name: str, key_id: str) -> None:
        provider = await self.provider(provider_name)
        if key_id not in {k.id for k in await self.store.list_provider_keys(provider.id)}:
            raise NotFound(f"no key {key_id} for provider {provider.name}")
        await self.store.delete_provider_key(key_id)
        await self._audit(
            "provider_key.delete", targets={"provider_id": provider.id, "provider_key_id": key_id}
        )

    # -- models ---------------------------------------------------------------------------

    @staticmethod
    def _prices(value: Any, name: str) -> Prices:
        if not isinstance(value, dict):
            raise InvalidRequest(f"`{name}` must be an object of USD-per-1M-token prices")
        try:
            return Prices.from_json(value)
        except MoneyFormatError as exc:
            raise InvalidRequest(f"`{name}`: {exc}") from None

    async def upsert_model(self, body: dict[str, Any], *, model_id: str | None = None) -> Model:
        existing = await self.store.get_model(model_id) if model_id else None
        if model_id is not None and existing is None:
            raise NotFound(f"model {model_id} does not exist")
        mid = model_id or fields.text(body, "id", maximum=200)
        assert mid is not None
        name = body.get("name") or (existing.name if existing else mid)
        mode = body.get("mode") or (existing.mode if existing else "chat")
        if mode not in MODES:
            raise InvalidRequest(f"`mode` must be one of {', '.join(MODES)}")
        context = body.get("context_length", existing.context_length if existing else None)
        max_output = body.get("max_output", existing.max_output if existing else None)
        if not isinstance(context, int) or isinstance(context, bool) or not 1 <= context <= fields.MAX_INT:
            raise InvalidRequest(f"`context_length` must be a positive integer (at most {fields.MAX_INT})")
        max_output = fields.positive_int({"max_output": max_output}, "max_output", 0)
        if "pricing" in body:
            prices = self._prices(body["pricing"], "pricing")
        elif existing is not None:
            prices = existing.prices
        else:
            raise InvalidRequest("`pricing` is required")
        deployments = body.get("deployments")
        if deployments is not None:
            if not isinstance(deployments, list):
                raise InvalidRequest("`deployments` must be a list")
            deployments = [self._deployment(d, i) for i, d in enumerate(deployments)]
        try:
            model = await self.store.upsert_model(
                mid,
                str(name),
                mode,
                context,
                max_output,
                prices,
                deployments or [],
                replace_deployments=deployments is not None,
                aliases=await aliases.model_aliases(self.store, body, mid),
            )
        except StoreError as exc:
            raise InvalidRequest(str(exc)) from None
        await self._audit(
            "model.update" if existing else "model.create",
            targets={"model_id": mid},
            params={
                "fields": sorted(body),
                "deployments": [
                    {"provider": d["provider"], "upstream_model": d["upstream_model"]}
                    for d in deployments or []
                ],
            },
        )
        return model

    def _deployment(self, value: Any, index: int) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidRequest(f"`deployments[{index}]` must be an object")
        provider = value.get("provider")
        upstream = value.get("upstream_model")
        if not isinstance(provider, str) or not isinstance(upstream, str) or not provider or not upstream:
            raise InvalidRequest(f"`deployments[{index}]` needs `provider` and `upstream_model` strings")
        out: dict[str, Any] = {
            "provider": provider,
            "upstream_model": upstream,
            "priority": fields.positive_int(value, "priority", 0),
            "weight": fields.positive_int(value, "weight", 1),
        }
        if value.get("pricing") is not None:
            out["prices"] = self._prices(value["pricing"], f"deployments[{index}].pricing")
        return out

    async def import_models(self, vendor: str, provider_name: str) -> list[Model]:
        """Deploy every bundled catalog model of `vendor` on a provider, at list price."""
        provider = await self.provider(provider_name)
        entries = await self.store.list_catalog(vendor)
        if not entries:
            raise NotFound(f"the catalog has no models of vendor {vendor}")
        models = []
        for entry in entries:
            models.append(
                await self.store.upsert_model(
                    f"{vendor}/{entry.model_id}",
                    entry.model_id,
                    entry.mode,
                    entry.context_length,
                    entry.max_output,
                    Prices.from_json(entry.pricing),
                    [{"provider": provider.id, "upstream_model": entry.model_id}],
                    replace_deployments=False,
                )
            )
        await self._audit(
            "model.import",
            targets={"provider_id": provider.id},
            params={"vendor": vendor, "models": len(models)},
        )
        return models

    async def delete_model(self, model_id: str) -> None:
        if not await self.store.delete_model(model_id):
            raise NotFound(f"model {model_id} does not exist")
        await self._audit("model.delete", targets={"model_id": model_id})

    # -- accounts and credits -------------------------------------------------------------

    async def create_account(self, body: dict[str, Any]) -> Account:
        name = fields.text(body, "name", maximum=200)
        email = fields.text(body, "email", required=False, maximum=320)
        assert name is not None
        account = await self.store.create_account(name, email)
        await self._audit(
            "account.create", account_id=account.id, targets={"account_id": account.id}, params={"name": name}
        )
        return account

    async def account(self, account_id: str) -> Account:
        found = await self.store.get_account(account_id)
        if found is None:
            raise NotFound(f"no account {account_id}")
        return found

    async def update_account(self, account_id: str, body: dict[str, Any]) -> Account:
        """Rename, or set the operator's account-wide rate limits (`rpm`, `tpm`; null lifts one)."""
        await self.account(account_id)
        unknown = set(body) - {"name", "email", "rpm", "tpm"}
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for name in ("name", "email"):
            if name in body:
                changes[name] = fields.text(body, name, required=name == "name", maximum=320)
        for name in ("rpm", "tpm"):
            if name in body:
                changes[name] = fields.optional_int(body[name], name)
        if not changes:
            raise InvalidRequest("nothing to change")
        updated = await self.store.update_account(account_id, changes)
        assert updated is not None
        await self._audit(
            "account.update", account_id=account_id, targets={"account_id": account_id}, params=changes
        )
        return updated

    async def add_credit(self, account_id: str, body: dict[str, Any]) -> tuple[Credit, bool]:
        await self.account(account_id)
        if "amount" not in body:
            raise InvalidRequest("`amount` is required")
        amount = fields.money(body["amount"], "amount", positive=True)
        reason = fields.text(body, "reason", required=False, maximum=500) or "credit"
        idem = fields.text(body, "idempotency_key", required=False, maximum=200)
        try:
            credit, created = await self.store.add_credit(account_id, amount, reason, idem)
        except AmountRangeError as exc:  # the account's total would pass what the ledger holds
            raise InvalidRequest(f"`amount`: {exc}") from None
        if created:  # a repeated idempotency key changes nothing
            await self._audit(
                "credit.add",
                account_id=account_id,
                targets={"account_id": account_id, "credit_id": credit.id},
                params={"amount_pico": amount, "reason": reason, "idempotency_key": idem},
            )
        return credit, created

    # -- keys -----------------------------------------------------------------------------

    async def create_key(
        self, account_id: str, body: dict[str, Any], scope: str = "inference"
    ) -> tuple[str, ApiKey]:
        await self.account(account_id)
        now = iso(self.clock())
        values = fields.key_fields(body, creating=True, now=now)
        secret = new_key(scope)
        record = ApiKey(
            id=new_id("key_", 10),
            account_id=account_id,
            scope=scope,
            name=values["name"],
            hint=display_hint(secret),
            limit=values.get("limit"),
            limit_reset=values.get("limit_reset"),
            window_start="",
            window_usage=0,
            usage=0,
            held=0,
            expires_at=values.get("expires_at"),
            disabled=False,
            revoked_at=None,
            rpm=values.get("rpm"),
            tpm=values.get("tpm"),
            max_concurrency=values.get("max_concurrency"),
            allowed_models=values.get("allowed_models"),
            created_at=now,
            updated_at=now,
        )
        created = await self.store.create_key(record, hash_key(secret))
        await self._audit(
            "key.create",
            account_id=account_id,
            targets={"account_id": account_id, "key_id": created.id},
            params={"scope": scope, "hint": created.hint, **values},
        )
        return secret, created

    async def key(self, key_id: str, account_id: str | None = None) -> ApiKey:
        found = await self.store.get_key(key_id)
        if found is None or (account_id is not None and found.account_id != account_id):
            raise NotFound(f"no key {key_id}")
        return found

    async def update_key(self, key_id: str, body: dict[str, Any], account_id: str | None = None) -> ApiKey:
        key = await self.key(key_id, account_id)
        if key.revoked_at is not None:
            raise Conflict("a revoked key cannot be changed")
        changes = fields.key_fields(body, creating=False, now=iso(self.clock()))
        if not changes:
            raise InvalidRequest("nothing to change")
        updated = await self.store.update_key(key_id, changes)
        assert updated is not None
        await self._audit("key.update", account_id=key.account_id, targets={"key_id": key_id}, params=changes)
        return updated

    async def revoke_key(self, key_id: str, account_id: str | None = None) -> ApiKey:
        key = await self.key(key_id, account_id)
        if key.revoked_at is not None:
            return key
        now = self.clock()
        updated = await self.store.update_key(key_id, {"revoked_at": iso(now)})
        assert updated is not None
        await self._audit("key.revoke", account_id=key.account_id, targets={"key_id": key_id})
        await alerts.key_revoked(self.store, updated, now, "api")  # alerts out
        return updated

    async def rotate_key(
        self, key_id: str, body: dict[str, Any], account_id: str | None = None
    ) -> tuple[str, ApiKey]:
        key = await self.key(key_id, account_id)
        if key.revoked_at is not None:
            raise Conflict("a revoked key cannot be rotated")
        grace = body.get("grace_seconds", 0)
        if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= 30 * 86400:
            raise InvalidRequest("`grace_seconds` must be an integer from 0 to 2592000")
        secret = new_key(key.scope)
        retire_at = iso(self.clock() + timedelta(seconds=grace))
        await self.store.add_key_secret(key.id, hash_key(secret), retire_at)
        await self._audit(
            "key.rotate",
            account_id=key.account_id,
            targets={"key_id": key.id},
            params={"grace_seconds": grace, "hint": display_hint(secret)},
        )
        return secret, key

    async def window_spend(self, key: ApiKey) -> dict[str, int]:
        now = self.clock()
        out = {}
        for reset in LIMIT_RESETS:
            since = window_start(reset, now) + "T00:00:00.000000Z"
            out[reset] = await self.store.key_spend_since(key.id, since)
        return out

    def current_window_usage(self, key: ApiKey) -> int:
        return key.usage_in_window(window_start(key.limit_reset, self.clock()))

    async def key_view(self, key: ApiKey) -> dict[str, Any]:
        """The contract's key object, with usage per window."""
        return key_view(key, await self.window_spend(key), self.current_window_usage(key))
