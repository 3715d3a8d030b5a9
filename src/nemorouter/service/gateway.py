"""The gateway flow: authenticate -> admit -> resolve -> reserve -> dispatch -> settle -> respond.

Knows nothing of HTTP frameworks: it takes a key and body bytes and returns bytes (or an
async generator of SSE frames) plus headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from nemorouter import jsonx
from nemorouter.engine.attempts import AttemptsFailed, send_first, stream_first
from nemorouter.engine.health import Health
from nemorouter.engine.http import Transport
from nemorouter.errors import (
    Forbidden,
    InvalidRequest,
    NemoError,
    NoDeploymentAvailable,
    NotFound,
    RateLimited,
)
from nemorouter.limits.local import AccountLimits, LimitExceeded, LocalLimiter, Ticket
from nemorouter.logs import RequestLog
from nemorouter.money import Usage, Usd, charge_for, format_usd, overrun_reason, window_start
from nemorouter.providers.bounds import chat_input_bound, embeddings_input_bound
from nemorouter.providers.canonical import ChatRequest, EmbeddingsRequest, ProviderPrefs
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.registry import Adapter
from nemorouter.providers.tokenizers import count_chat_prompt
from nemorouter.providers.types import Completion, Failure, UnsupportedContent, UpstreamRequest
from nemorouter.service import billing, failures
from nemorouter.service.bodies import held_output, prompt_rules_of
from nemorouter.service.metrics import Metrics
from nemorouter.service.relay import relay
from nemorouter.service.routing import Route, RoutingTable, Target, adapter_of
from nemorouter.service.selection import candidates, health_names
from nemorouter.settings import Timeouts
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey, Generation, Hold, Outcome, Overrun
from nemorouter.timeutil import iso, time_ordered_id

log = logging.getLogger("nemorouter.gateway")


def timeouts_of(target: Target) -> Timeouts | None:
    return target.timeouts


@dataclass(slots=True, init=False)
class JsonReply:
    body: bytes
    headers: dict[str, str]
    status: int = 200

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(self, body: bytes, headers: dict[str, str], status: int = 200) -> None:
        self.body = body
        self.headers = headers
        self.status = status


@dataclass(slots=True)
class StreamReply:
    headers: dict[str, str]
    chunks: AsyncGenerator[bytes, None]


@dataclass(slots=True, init=False)
class Call:
    """One admitted request: its id, key, hold and limiter ticket."""

    id: str
    key: ApiKey
    endpoint: str
    routes: list[Route]
    targets: list[Target]
    hold: int
    input_bound: int
    max_output: int
    ticket: Ticket
    started: float
    created_at: str
    stream: bool

    # A hand-written __init__: compiled, a direct constructor (docs/architecture.md, "Speed").
    def __init__(
        self,
        id: str,
        key: ApiKey,
        endpoint: str,
        routes: list[Route],
        targets: list[Target],
        hold: int,
        input_bound: int,
        max_output: int,
        ticket: Ticket,
        started: float,
        created_at: str,
        stream: bool,
    ) -> None:
        self.id = id
        self.key = key
        self.endpoint = endpoint
        self.routes = routes
        self.targets = targets
        self.hold = hold
        self.input_bound = input_bound
        self.max_output = max_output
        self.ticket = ticket
        self.started = started
        self.created_at = created_at
        self.stream = stream


class Gateway:
    def __init__(
        self,
        store: Store,
        routes: RoutingTable,
        client: Transport,
        limiter: LocalLimiter,
        clock: Callable[[], datetime],
        owner: str,
        keepalive_seconds: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.routes = routes
        self.client = client
        self.limiter = limiter
        self.clock = clock
        self.owner = owner
        self.keepalive_seconds = keepalive_seconds  # SSE comments while a stream waits for its first token
        self.health = Health()
        self.metrics = metrics or Metrics()
        self.request_log = RequestLog()
        self._rng = random.Random()
        self._background: set[asyncio.Task[None]] = set()
        self.refusals: set[tuple[str, str]] = set()  # (key id, reason) of refused reserves; alerts drain it
        self.overruns: list[Overrun] = []  # operator overruns not yet alerted; alerts drain it

    # -- use cases ------------------------------------------------------------------------

    async def chat(self, key: ApiKey, request: ChatRequest) -> JsonReply | StreamReply:
        body, ids = request.body, request.model_ids
        routes = await self._resolve(key, ids, "chat")
        n = request.n
        max_output = held_output(request.max_output, [r.model.max_output for r in routes], n)
        stream = request.stream
        targets = self._candidates(routes, request.prefs)
        bound = chat_input_bound(body, prompt_rules_of(targets))
        call = await self._admit(
            key, "chat", routes, targets, bound, max_output, n, stream, bound // 4 + max_output
        )

        def build(target: Target) -> UpstreamRequest:
            return adapter_of(target).chat_request(body, target.upstream())

        try:
            if stream:
                target, handle, first, decode = await stream_first(
                    self.client, call.targets, adapter_of, build, self._on_failure, timeouts_of
                )
                self._on_success(target, call)
                chunks = relay(self, call, target, handle, first, decode, body)
                return StreamReply(self._headers(call), chunks)
            target, completion, _ = await send_first(
                self.client,
                call.targets,
                adapter_of,
                build,
                lambda a, d: a.chat_response(d),
                self._on_failure,
                timeouts_of,
            )
            self._on_success(target, call)
        except AttemptsFailed as exc:
            raise await self._failed(call, exc) from None
        except BaseException:
            await self.release(call, error="the request was interrupted")
            raise
        return await self._reply(call, target, completion, chat=body)

    async def embeddings(self, key: ApiKey, request: EmbeddingsRequest) -> JsonReply:
        body, ids = request.body, request.model_ids
        routes = await self._resolve(key, ids, "embedding")
        bound = embeddings_input_bound(body["input"])
        targets = self._candidates(routes, request.prefs)
        call = await self._admit(key, "embeddings", routes, targets, bound, 0, 1, False, bound // 4)

        def build(target: Target) -> UpstreamRequest:
            make = adapter_of(target).embeddings_request
            if make is None:
                raise UnsupportedContent(f"provider {target.provider.name} does not serve embeddings")
            return make(body, target.upstream())

        def parse(adapter: Adapter, data: Any) -> Completion:
            assert adapter.embeddings_response is not None
            return adapter.embeddings_response(data)

        try:
            target, completion, _ = await send_first(
                self.client, call.targets, adapter_of, build, parse, self._on_failure, timeouts_of
            )
            self._on_success(target, call)
        except AttemptsFailed as exc:
            raise await self._failed(call, exc) from None
        except BaseException:
            await self.release(call, error="the request was interrupted")
            raise
        return await self._reply(call, target, completion, chat=None)

    # -- steps ----------------------------------------------------------------------------

    async def _resolve(self, key: ApiKey, ids: list[str], mode: str) -> list[Route]:
        await self.routes.refresh()
        found: list[Route] = []
        for model_id in ids:
            if key.allowed_models is not None and model_id not in key.allowed_models:
                raise Forbidden(f"this key may not use model {model_id}", type="model_not_allowed")
            route = self.routes.route(model_id)
            if route is None:
                raise NotFound(f"model {model_id} does not exist", type="model_not_found")
            if route.model.mode != mode:
                raise InvalidRequest(f"model {model_id} is a {route.model.mode} model, not a {mode} model")
            found.append(route)
        return found

    async def _admit(
        self,
        key: ApiKey,
        endpoint: str,
        routes: list[Route],
        targets: list[Target],
        bound: int,
        max_output: int,
        n: int,
        stream: bool,
        tokens_estimate: int,
    ) -> Call:
        hold, dearest = billing.dearest([t.prices for t in targets], bound, max_output)
        try:
            account = AccountLimits(key.account_id, key.account_rpm, key.account_tpm)
            if self.limiter.shared:  # Redis, shared by every replica
                ticket = await self.limiter.admit_shared(
                    key.id, key.rpm, key.tpm, key.max_concurrency, tokens_estimate, account
                )
            else:
                ticket = self.limiter.admit(
                    key.id, key.rpm, key.tpm, key.max_concurrency, tokens_estimate, account
                )
        except LimitExceeded as exc:
            self.metrics.rate_limited.labels(exc.what).inc()
            error = RateLimited(
                f"rate limit of this key exceeded ({exc.what}); retry after {exc.decision.retry_after:.1f}s",
                retry_after=max(1, int(exc.decision.retry_after + 0.999)),
            )
            error.headers.update(exc.headers)
            raise error from None
        now = self.clock()
        stamp = iso(now)
        call = Call(
            id=time_ordered_id("gen-"),
            key=key,
            endpoint=endpoint,
            routes=routes,
            targets=targets,
            hold=hold,
            input_bound=bound,
            max_output=max_output,
            ticket=ticket,
            started=time.monotonic(),
            created_at=stamp,
            stream=stream,
        )
        result = await self.store.reserve(
            Hold(
                call.id,
                key.account_id,
                key.id,
                hold,
                window_start(key.limit_reset, now),
                self.owner,
                stamp,
                model=routes[0].model.id,
                endpoint=endpoint,
                streamed=stream,
            ),
            stamp,
        )
        if not result.ok:
            self.limiter.finish(ticket, 0)
            self.refusals.add((key.id, result.reason))
            raise billing.refusal(result, hold, dearest, bound, n)
        self.metrics.open_holds += 1
        return call

    def _candidates(self, routes: list[Route], prefs: ProviderPrefs | None) -> list[Target]:
        targets, wait = candidates(routes, prefs, self.health, self._rng)
        if targets:
            return targets
        if wait is not None:
            raise RateLimited(
                "every provider for this model asked us to wait; retry shortly",
                type="upstream_rate_limited",
                retry_after=max(1, math.ceil(wait)),
            )
        raise NoDeploymentAvailable(
            "no deployment of this model is available right now (all cooling down, disabled or filtered out)"
        )

    def _on_success(self, target: Target, call: Call) -> None:
        deployment, key = health_names(target)
        self.health.success(deployment, (time.monotonic() - call.started) * 1000)
        self.health.success(key)

    def _headers(self, call: Call) -> dict[str, str]:
        return {"x-nemo-request-id": call.id}

    def _on_failure(self, target: Target, failure: Failure) -> None:
        """Teach the breakers; quarantine a vault key its provider refuses as invalid.

        Only a failure the attempt loop held against the key (`against_key`, at most one per
        request) touches the key: a 429 cools down that key on that deployment, a refused key is
        quarantined. A refusal puts no in-memory cool-down on the key: the quarantine (a store
        row every replica routes by) is the whole effect, so releasing it clears it everywhere.
        A 403 (`forbidden`) is the request's failure and leaves key and deployment alone.
        """
        deployment, key = health_names(target)
        self.metrics.upstream_failures.labels(target.provider.name, failure.kind).inc()
        log.warning(
            "upstream attempt failed",
            extra={
                "provider": target.provider.name,
                "deployment": target.deployment.id,
                "provider_key": target.key.id,
                "kind": failure.kind,
                "status": failure.status,
                "against_key": failure.against_key,
            },
        )
        if failure.kind == "rate_limited":
            if failure.against_key:
                self.health.cool_down(key, failure.retry_after if failure.retry_after is not None else 1)
        elif failure.key_rejected:
            self._spawn(self._quarantine(target, failure))
        elif failure.kind in ("server", "overloaded", "timeout", "connect", "protocol"):
            self.health.failure(deployment)
            if failure.retry_after:
                self.health.cool_down(deployment, failure.retry_after)

    async def _quarantine(self, target: Target, failure: Failure) -> None:
        """Mark the key quarantined in the store (kept out of routing by every replica until an
        operator releases it). Requests in flight may see the same refusal: the first one's
        time stays, so the operator is alerted once."""
        try:
            current = {k.id: k for k in await self.store.list_provider_keys(target.provider.id)}
            found = current.get(target.key.id)
            if found is not None and found.quarantined_at is None:
                await self.store.update_provider_key(target.key.id, {"quarantined_at": iso(self.clock())})
                log.error(
                    "provider key quarantined: its provider refused it; fix it and PATCH quarantined=false",
                    extra={
                        "provider": target.provider.name,
                        "provider_key": target.key.id,
                        "status": failure.status,
                    },
                )
            await self.routes.refresh(force=True)
        except Exception:
            log.exception("provider key not quarantined", extra={"provider_key": target.key.id})

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def generation(
        self, call: Call, target: Target | None, usage: Usage, cost: int, status: str, outcome: Outcome
    ) -> Generation:
        raw_usage = outcome.raw_usage
        return Generation(
            id=call.id,
            account_id=call.key.account_id,
            key_id=call.key.id,
            model=(target.model.id if target else call.routes[0].model.id),
            endpoint=call.endpoint,
            streamed=call.stream,
            status=status,
            created_at=call.created_at,
            provider=target.provider.name if target else None,
            upstream_model=target.deployment.upstream_model if target else None,
            deployment_id=target.deployment.id if target else None,
            provider_key_id=target.key.id if target else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost=cost,
            hold=call.hold,
            price_version_id=target.price_version_id if target else None,
            latency_ms=int((time.monotonic() - call.started) * 1000),
            cancelled=outcome.cancelled,
            finish_reason=outcome.finish_reason,
            raw_usage=_raw_text(raw_usage) if raw_usage else None,
            error=outcome.error,
        )

    async def settle(
        self, call: Call, target: Target, usage: Usage, status: str, outcome: Outcome
    ) -> tuple[int, Usage]:
        """Charge `usage` at the serving deployment's prices, never more than the hold: what a
        provider reports beyond it is the operator's overrun (docs/money-trail.md). Returns the
        charge and the counts it was billed for."""
        charge = charge_for(usage, target.prices, call.hold, call.input_bound, call.max_output)
        gen = self.generation(call, target, charge.usage, charge.cost, status, outcome)
        reset = call.key.limit_reset
        window = "all" if reset is None else window_start(reset, self.clock())
        if not await self.store.settle(call.id, gen, window):
            log.error("settle found no open hold", extra={"request_id": call.id})
        elif charge.overrun:
            self._overrun(call, target, gen, usage, charge.reported_cost)
        self.limiter.finish(call.ticket, charge.usage.total_tokens)
        self.metrics.open_holds -= 1
        self.metrics.settled(target.model.id, target.provider.name, status, charge.usage, charge.cost)
        self._log(gen)
        return charge.cost, charge.usage

    def _overrun(self, call: Call, target: Target, gen: Generation, reported: Usage, cost: int) -> None:
        """A provider reported more than the request allowed: log it as the provider's fault,
        count it, and keep it (off the request's path) for reconciliation and the operator."""
        found = Overrun(
            request_id=call.id,
            account_id=call.key.account_id,
            key_id=call.key.id,
            model=target.model.id,
            provider=target.provider.name,
            provider_key_id=target.key.id,
            deployment_id=target.deployment.id,
            hold=call.hold,
            charged=gen.cost,
            reported_cost=cost,
            overrun=cost - gen.cost,
            reason=overrun_reason(reported, call.input_bound, call.max_output),
            raw_usage=gen.raw_usage,
            created_at=call.created_at,
        )
        log.error(
            "operator overrun: the provider reported more than the request's hold covers",
            extra={
                "request_id": call.id,
                "provider": target.provider.name,
                "provider_key": target.key.id,
                "reason": found.reason,
                "hold": format_usd(call.hold),
                "charged": format_usd(gen.cost),
                "reported_cost": format_usd(cost),
                "raw_usage": gen.raw_usage,
            },
        )
        self.metrics.overrun(target.provider.name, target.key.id, found.overrun)
        self.overruns.append(found)
        self._spawn(self._keep_overrun(found))

    async def _keep_overrun(self, found: Overrun) -> None:
        try:
            await self.store.record_overrun(found)
        except Exception:
            log.exception("could not record an operator overrun", extra={"request_id": found.request_id})

    def _log(self, gen: Generation) -> None:
        """The one line per request operators search: ids, route, outcome, tokens, money, time."""
        self.request_log.write(
            {
                "request_id": gen.id,
                "account_id": gen.account_id,
                "key_id": gen.key_id,
                "endpoint": gen.endpoint,
                "model": gen.model,
                "provider": gen.provider,
                "deployment": gen.deployment_id,
                "status": gen.status,
                "streamed": gen.streamed,
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": gen.completion_tokens,
                "cost": format_usd(gen.cost),
                "latency_ms": gen.latency_ms,
            }
        )

    async def _failed(self, call: Call, exc: AttemptsFailed) -> NemoError:
        """No provider served: release the hold, keep the failure on the record, name it in the reply."""
        error = failures.to_error(exc)
        await self.release(call, error=error.message)
        error.headers["x-nemo-request-id"] = call.id
        return error

    async def release(self, call: Call, error: str | None = None) -> None:
        """Drop the hold without charge (failed before output)."""
        gen = self.generation(call, None, Usage(), 0, "error", Outcome(error=error))
        await self.store.release(call.id, gen)
        self.limiter.finish(call.ticket, 0)
        self.metrics.open_holds -= 1
        self.metrics.released(gen.model)
        self._log(gen)

    def estimate_usage(self, call: Call, output_tokens: int, prompt_tokens: int | None = None) -> Usage:
        """When the provider reported no usage: the prompt as counted by the model family's
        tokenizer, else the hold's own prompt bound (it never undercounts what the provider
        bills, and never passes the hold); the output as counted."""
        bound = max(1, call.input_bound)
        prompt = bound if prompt_tokens is None else max(1, min(prompt_tokens, bound))
        return Usage(prompt_tokens=prompt, completion_tokens=output_tokens)

    async def counted_prompt(self, call: Call, target: Target, body: dict[str, Any] | None) -> int | None:
        """The prompt of a chat `body` by its model family's offline tokenizer, at most the bound;
        None when no tokenizer fits (docs/money-trail.md, "A stream cut short")."""
        if body is None:
            return None
        names = (target.model.id, target.deployment.upstream_model)
        try:
            # Off the event loop: the first use loads the tokenizer (~0.5 s), a long prompt takes ms.
            return await asyncio.to_thread(count_chat_prompt, body, names, call.input_bound)
        except Exception:  # no tokenizer at hand (or no executor at shutdown): the bound, never less
            log.exception("prompt count failed; charging the prompt bound", extra={"request_id": call.id})
            return None

    async def _reply(
        self, call: Call, target: Target, completion: Completion, chat: dict[str, Any] | None
    ) -> JsonReply:
        """The answer to a non-stream request (`chat`: its body; None for embeddings), settled."""
        usage = completion.usage
        raw_usage = completion.raw_usage
        if usage is None:
            if raw_usage is not None:  # present but impossible (negative, fractional, text counts)
                log.error(
                    "provider fault: unreadable usage report; billed an estimate within the hold",
                    extra={
                        "request_id": call.id,
                        "provider": target.provider.name,
                        "raw_usage": _raw_text(raw_usage),
                    },
                )
            prompt = await self.counted_prompt(call, target, chat)
            output = _content_tokens(completion.body) if chat is not None else 0
            usage = self.estimate_usage(call, output, prompt)
            how = {"estimated": True, "prompt": "bound" if prompt is None else "tokenizer"}
            raw_usage = {**how, "reported": raw_usage} if raw_usage is not None else how
        cost, usage = await self.settle(
            call,
            target,
            usage,
            "success",
            Outcome(finish_reason=completion.finish_reason, raw_usage=raw_usage),
        )
        body = completion.body
        body["id"] = call.id
        body["model"] = target.model.id
        body["created"] = int(time.time())
        if chat is not None:
            body["usage"] = {**usage_to_openai(usage), "cost": Usd(cost)}
        else:
            body["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.prompt_tokens,
                "cost": Usd(cost),
            }
        headers = self._headers(call)
        headers["x-nemo-cost"] = format_usd(cost)
        return JsonReply(jsonx.dumps(body), headers)


def _raw_text(raw: dict[str, Any]) -> str:
    """A provider's usage report as JSON text (parsed JSON: no Usd). orjson refuses integers
    beyond 64 bits, which an untrusted report may carry; the standard library keeps them."""
    try:
        return orjson.dumps(raw).decode()
    except orjson.JSONEncodeError:
        return json.dumps(raw, default=repr)


def _content_tokens(body: dict[str, Any]) -> int:
    """A rough count of output tokens (bytes / 4) when a provider omits usage."""
    total = 0
    for choice in body.get("choices") or ():
        message = choice.get("message") or {} if isinstance(choice, dict) else {}
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.encode())
        for call in message.get("tool_calls") or ():
            total += len(str(call).encode())
    return (total + 3) // 4
