"""The gateway flow: resolve -> admit -> dispatch -> settle -> respond.

Knows nothing of HTTP frameworks or wire formats: it takes a key and a canonical request (a front
door parsed it: frontdoors/) and returns bytes (or a stream of SSE frames) plus headers. Each step
is its own module: admission (models, attempts, rate limits, the hold), the dispatcher
(engine/dispatch.py: attempts, breakers, quarantine), settlement (charge or release, the record)
and the stream relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nemorouter import jsonx
from nemorouter.engine.dispatch import Attempt, AttemptsFailed, Dispatcher, Operation
from nemorouter.engine.health import Health
from nemorouter.engine.http import Transport
from nemorouter.errors import NemoError
from nemorouter.limits.budget import PerKeyBudget
from nemorouter.limits.local import LocalLimiter
from nemorouter.money import format_usd
from nemorouter.providers import bounds
from nemorouter.providers.canonical import (
    ChatRequest,
    EmbeddingsRequest,
    ModerationRequest,
    ProviderPrefs,
    RerankRequest,
)
from nemorouter.providers.openai_wire import usage_to_openai
from nemorouter.providers.types import Completion
from nemorouter.service.admission import Admission, Call
from nemorouter.service.bodies import held_output, prompt_rules_of
from nemorouter.service.metrics import Metrics
from nemorouter.service.quarantine import Quarantine
from nemorouter.service.relay import Frames, Relay
from nemorouter.service.routing import Route, RoutingTable, Target
from nemorouter.service.settlement import Settlement
from nemorouter.service.tasks import Tasks
from nemorouter.store.base import Store
from nemorouter.store.records import ApiKey


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
    chunks: Frames


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
        upstream_counts_per_minute: int = 60,
    ) -> None:
        self.store = store
        self.routes = routes
        self.limiter = limiter
        self.owner = owner  # whose holds these are (the process lease)
        self.keepalive_seconds = keepalive_seconds  # SSE comments while a stream waits for its first token
        self.metrics = metrics or Metrics()
        self.health = Health()
        # count_tokens calls upstream at most this often per key (frontdoors/anthropic_messages/count.py)
        self.count_budget = PerKeyBudget(upstream_counts_per_minute)
        tasks = Tasks()
        self.quarantine = Quarantine(store, routes, clock, self.metrics, tasks)
        self.dispatcher = Dispatcher(client, self.quarantine, self.health)
        self.admission = Admission(store, routes, limiter, clock, owner, self.metrics, self.health)
        self.settlement = Settlement(store, limiter, clock, self.metrics, tasks)
        self.refusals = self.admission.refusals  # (key id, reason) of refused reserves; alerts drain it
        self.overruns = self.settlement.overruns  # operator overruns not yet alerted; alerts drain it

    def use(self, store: Store, client: Transport) -> None:
        """Send through other proxies of the store and the upstream client (tracing's)."""
        self.store = self.quarantine.store = self.admission.store = self.settlement.store = store
        self.dispatcher.client = client

    # -- use cases ------------------------------------------------------------------------

    async def chat(self, key: ApiKey, request: ChatRequest) -> JsonReply | StreamReply:
        body, ids = request.body, request.model_ids
        admission = self.admission
        routes = await admission.resolve(key, ids, "chat")
        n = request.n
        max_output = held_output(request.max_output, [r.model.max_output for r in routes], n)
        stream = request.stream
        attempts = admission.candidates(routes, request.prefs)
        bound = bounds.chat_input_bound(body, prompt_rules_of([a.origin for a in attempts]))
        call = await admission.admit(
            key, "chat", routes, attempts, bound, max_output, n, stream, bound // 4 + max_output
        )
        try:
            if stream:
                opened = await self.dispatcher.open_stream(call.attempts, body, call.started)
                target = opened.attempt.origin
                chunks = Relay(
                    self.settlement,
                    self.keepalive_seconds,
                    call,
                    target,
                    opened.handle,
                    opened.first,
                    opened.decode,
                    body,
                )
                return StreamReply(_headers(call), chunks)
            attempt, completion = await self.dispatcher.send(
                call.attempts, body, Operation.CHAT, call.started
            )
        except AttemptsFailed as exc:
            raise await self.settlement.failed(call, exc) from None
        except NemoError as refusal:  # its own name: compiled, `exc` has one type per function
            raise await self.settlement.refused(call, refusal) from None
        except BaseException:
            await self.settlement.release(call, error="the request was interrupted")
            raise
        return await self._reply(call, attempt.origin, completion, chat=body)

    async def embeddings(self, key: ApiKey, request: EmbeddingsRequest) -> JsonReply:
        routes = await self.admission.resolve(key, request.model_ids, "embedding")
        bound = bounds.embeddings_input_bound(request.body["input"])
        return await self._one_answer(key, routes, request.body, request.prefs, Operation.EMBEDDINGS, bound)

    async def moderations(self, key: ApiKey, request: ModerationRequest) -> JsonReply:
        body = request.body
        routes = await self.admission.resolve(key, request.model_ids, "moderation")
        window = max(r.model.context_length for r in routes)
        bound = bounds.moderation_input_bound(body["input"], window)
        texts = bounds.moderation_texts(body["input"])
        counted = None if texts is None else {"messages": [{"role": "user", "content": t} for t in texts]}
        return await self._one_answer(key, routes, body, request.prefs, Operation.MODERATIONS, bound, counted)

    async def rerank(self, key: ApiKey, request: RerankRequest) -> JsonReply:
        routes = await self.admission.resolve(key, request.model_ids, "rerank")
        body = request.body
        bound = bounds.rerank_input_bound(body)
        search = any(p.unit_rate("search") for r in routes for p in r.prices)  # Cohere's search units
        unit, units = ("search", bounds.rerank_search_units(body)) if search else ("", 0)
        return await self._one_answer(
            key, routes, body, request.prefs, Operation.RERANK, bound, None, unit, units
        )

    async def _one_answer(
        self,
        key: ApiKey,
        routes: list[Route],
        body: dict[str, Any],
        prefs: ProviderPrefs | None,
        operation: Operation,
        bound: int,
        prompt: dict[str, Any] | None = None,
        unit: str = "",
        units: int = 0,
    ) -> JsonReply:
        """One answer of input tokens (embeddings, moderations, rerank) and units (`units` of `unit`),
        held, sent, settled (`prompt`: its text as a chat body, counted when no usage is reported)."""
        attempts = self.admission.candidates(routes, prefs)
        held = (bound, 0, 1, bound // 4, unit, units)
        call, target, completion = await self.send_held(key, routes, attempts, body, operation, *held)
        return await self._reply(call, target, completion, chat=None, prompt=prompt)

    async def send_held(
        self,
        key: ApiKey,
        routes: list[Route],
        attempts: list[Attempt[Target]],
        body: dict[str, Any],
        operation: Operation,
        bound: int,
        max_output: int,
        n: int,
        tokens: int,
        unit: str = "",
        units: int = 0,
    ) -> tuple[Call, Target, Completion]:
        """Admit (the hold), send with failover, and release the hold if no answer came: the
        answer, unsettled, for a flow that settles it its own way (one answer, images, audio)."""
        call = await self.admission.admit(
            key, operation.value, routes, attempts, bound, max_output, n, False, tokens, unit, units
        )
        try:
            attempt, completion = await self.dispatcher.send(call.attempts, body, operation, call.started)
        except AttemptsFailed as exc:
            raise await self.settlement.failed(call, exc) from None
        except NemoError as refusal:  # its own name: compiled, `exc` has one type per function
            raise await self.settlement.refused(call, refusal) from None
        except BaseException:
            await self.settlement.release(call, error="the request was interrupted")
            raise
        return call, attempt.origin, completion

    # -- steps ----------------------------------------------------------------------------

    async def _reply(
        self,
        call: Call,
        target: Target,
        completion: Completion,
        chat: dict[str, Any] | None,
        prompt: dict[str, Any] | None = None,
    ) -> JsonReply:
        """The answer to a non-stream request (`chat`: its body; None for embeddings and
        moderations), settled."""
        cost, usage = await self.settlement.settle_completion(call, target, completion, chat, prompt)
        body = completion.body
        body["id"] = call.id
        body["model"] = target.model.id
        body["created"] = int(time.time())
        cost_text = format_usd(cost)  # once, for the body and the header
        if chat is not None:
            body["usage"] = {**usage_to_openai(usage), "cost": jsonx.usd_literal(cost_text)}
        else:
            body["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.prompt_tokens,
                "cost": jsonx.usd_literal(cost_text),
            }
        headers = _headers(call)
        headers["x-nemo-cost"] = cost_text
        return JsonReply(jsonx.dumps(body), headers)


def _headers(call: Call) -> dict[str, str]:
    return {"x-nemo-request-id": call.id}
