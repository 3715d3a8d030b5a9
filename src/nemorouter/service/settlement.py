"""Settlement: every admitted request ends here once, charged or released.

A charge is the usage at the serving deployment's prices, never more than the hold (the cap
rules: money/settlement.py); what a provider reports beyond it is the operator's overrun
(docs/money-trail.md). A request that failed before output is released without charge. Either
way its generation record is written and its line goes to the request log. Used by the gateway
flow and by the stream relay; it calls nothing above it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from nemorouter.engine.dispatch import AttemptsFailed
from nemorouter.errors import NemoError
from nemorouter.limits.local import LocalLimiter
from nemorouter.logs import RequestLog
from nemorouter.money import Usage, charge_for, format_usd, named, overrun_reason, window_start
from nemorouter.providers.tokenizers import count_chat_prompt
from nemorouter.providers.types import Completion
from nemorouter.service import failures
from nemorouter.service.admission import Call
from nemorouter.service.metrics import Metrics
from nemorouter.service.routing import Target
from nemorouter.service.tasks import Tasks
from nemorouter.store.base import Store
from nemorouter.store.records import Generation, Outcome, Overrun

log = logging.getLogger("nemorouter.gateway")


def estimate_usage(call: Call, output_tokens: int, prompt_tokens: int | None = None) -> Usage:
    """When the provider reported no usage: the prompt as counted by the model family's
    tokenizer, else the hold's own prompt bound (it never undercounts what the provider
    bills, and never passes the hold); the output as counted; a request priced per unit, the
    units held (what the request asked for: the images, the characters, the file's seconds)."""
    if call.units and not call.input_bound:  # priced per unit alone: no prompt to count
        return Usage(completion_tokens=output_tokens, unit=call.unit, units=call.units)
    bound = max(1, call.input_bound)
    prompt = bound if prompt_tokens is None else max(1, min(prompt_tokens, bound))
    return Usage(prompt_tokens=prompt, completion_tokens=output_tokens, unit=call.unit, units=call.units)


class Settlement:
    def __init__(
        self,
        store: Store,
        limiter: LocalLimiter,
        clock: Callable[[], datetime],
        metrics: Metrics,
        tasks: Tasks,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.clock = clock
        self.metrics = metrics
        self.tasks = tasks
        self.request_log = RequestLog()
        self.overruns: list[Overrun] = []  # operator overruns not yet alerted; alerts drain it

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
            unit=usage.unit or None,
            units=usage.units,
        )

    async def settle(
        self, call: Call, target: Target, usage: Usage, status: str, outcome: Outcome
    ) -> tuple[int, Usage]:
        """Charge `usage` at the serving deployment's prices, never more than the hold: what a
        provider reports beyond it is the operator's overrun (docs/money-trail.md). Returns the
        charge and the counts it was billed for."""
        if call.unit:  # priced per unit: the adapter counted, the request names the unit
            usage = named(usage, call.unit)
        charge = charge_for(usage, target.prices, call.hold, call.input_bound, call.max_output, call.units)
        gen = self.generation(call, target, charge.usage, charge.cost, status, outcome)
        reset = call.key.limit_reset
        window = "all" if reset is None else window_start(reset, self.clock())
        try:
            settled = await self.store.settle(call.id, gen, window)
        finally:  # its limits and its hold are done with whatever happens to this call (cancelled, failed)
            self.limiter.finish(call.ticket, charge.usage.total_tokens)
            self.metrics.open_holds -= 1
        if not settled:
            log.error("settle found no open hold", extra={"request_id": call.id})
        elif charge.overrun:
            self._overrun(call, target, gen, usage, charge.reported_cost)
        self.metrics.settled(target.model.id, target.provider.name, status, charge.usage, charge.cost)
        self._log(gen)
        return charge.cost, charge.usage

    async def settle_completion(
        self,
        call: Call,
        target: Target,
        completion: Completion,
        chat: dict[str, Any] | None,
        prompt: dict[str, Any] | None = None,
    ) -> tuple[int, Usage]:
        """Settle a non-stream answer (`chat`: the request's body; None for embeddings and
        moderations): its reported usage, else an estimate within the hold. `prompt`, for an
        answer that is not chat, is a chat body holding its input text, to count it by."""
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
            counted = await self.counted_prompt(call, target, chat if chat is not None else prompt)
            output = _content_tokens(completion.body) if chat is not None else 0
            usage = estimate_usage(call, output, counted)
            how = {"estimated": True, "prompt": "bound" if counted is None else "tokenizer"}
            raw_usage = {**how, "reported": raw_usage} if raw_usage is not None else how
        outcome = Outcome(finish_reason=completion.finish_reason, raw_usage=raw_usage)
        return await self.settle(call, target, usage, "success", outcome)

    async def release(self, call: Call, error: str | None = None) -> None:
        """Drop the hold without charge (failed before output)."""
        gen = self.generation(call, None, Usage(), 0, "error", Outcome(error=error))
        try:
            await self.store.release(call.id, gen)
        finally:  # its limits and its hold are done with whatever happens to this call (cancelled, failed)
            self.limiter.finish(call.ticket, 0)
            self.metrics.open_holds -= 1
        self.metrics.released(gen.model)
        self._log(gen)

    async def failed(self, call: Call, exc: AttemptsFailed) -> NemoError:
        """No provider served: release the hold, keep the failure on the record, name it in the reply."""
        error = failures.to_error(exc)
        await self.release(call, error=error.message)
        error.headers["x-nemo-request-id"] = call.id
        return error

    async def refused(self, call: Call, error: NemoError) -> NemoError:
        """The request was refused after admission, before any provider saw it (a header that
        cannot be sent: engine/http.py): released, the refusal kept on the record as what ended
        it (not as an interrupted request), and its answer names the record."""
        await self.release(call, error=f"refused ({error.status} {error.type}): {error.message}")
        error.headers["x-nemo-request-id"] = call.id
        return error

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
            reason=overrun_reason(reported, call.input_bound, call.max_output, call.units),
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
        self.tasks.spawn(self._keep_overrun(found))

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
