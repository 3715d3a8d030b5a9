"""OpenAI's Responses API for the sim: `POST /v1/responses`, a Response or its event stream.

Shapes follow the openai SDK's `types/responses` (Response, the `response.*` stream events, each
with `sequence_number`); the reply, its token counts and the `[sim:...]` directives are the
chat planner's (`responses_plan`), so the same request gets the same answer on either API.
A reasoning item appears when the `reasoning=N` directive reports reasoning tokens; with
`include: ["reasoning.encrypted_content"]` it carries an `encrypted_content` the sim accepts back.
Stream faults: `cut_after=N` drops the connection after N deltas, `error_after=N` sends
`response.failed` (no usage) after N deltas, `no_usage=1` completes with `usage: null`,
`malformed=1` sends one unreadable event after `response.created`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nemorouter.sim.content import Reply
from nemorouter.sim.faults import Faults, dumps, sleep_ms
from nemorouter.sim.openai_plan import BadRequest, ChatPlan, plan_chat
from nemorouter.sim.openai_wire import JSON, TOOL_ARG_FRAGMENT, bad_request, prelude
from nemorouter.sim.responses_plan import ENCRYPTED_PREFIX, chat_body, responses_usage
from nemorouter.sim.sse import CUT, SimStream
from nemorouter.sim.tokens import token_pieces


def _inband(body: dict[str, Any]) -> list[str]:
    """Texts of the last user message in `input`, where `[sim:...]` directives may appear."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    for item in reversed(value if isinstance(value, list) else []):
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return [content]
            return [
                p["text"] for p in content or () if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
    return []


def _reasoning_items(plan: ChatPlan, body: dict[str, Any]) -> list[dict[str, Any]]:
    if plan.reasoning <= 0:
        return []
    item: dict[str, Any] = {"type": "reasoning", "id": "rs_" + secrets.token_hex(12), "summary": []}
    if "reasoning.encrypted_content" in (body.get("include") or ()):
        item["encrypted_content"] = ENCRYPTED_PREFIX + secrets.token_hex(16)
    return [item]


def _answer_item(reply: Reply, status: str = "completed") -> dict[str, Any]:
    if reply.tool_name is not None:
        return {
            "type": "function_call",
            "id": "fc_" + secrets.token_hex(12),
            "call_id": reply.tool_call_id,
            "name": reply.tool_name,
            "arguments": reply.tool_arguments if status == "completed" else "",
            "status": status,
        }
    text = [{"type": "output_text", "text": reply.content or "", "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": "msg_" + secrets.token_hex(12),
        "role": "assistant",
        "status": status,
        "content": text if status == "completed" else [],
    }


def response_object(
    body: dict[str, Any], response_id: str, output: list[dict[str, Any]], status: str, usage: Any
) -> dict[str, Any]:
    found = body.get("reasoning")
    reasoning: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def _status(reply: Reply) -> str:
    return "incomplete" if reply.finish_reason == "length" else "completed"


def _event(kind: str, sequence: int, **data: Any) -> bytes:
    return (
        b"event: "
        + kind.encode()
        + b"\ndata: "
        + dumps({"type": kind, "sequence_number": sequence, **data})
        + b"\n\n"
    )


class _Events:
    """The event sequence of one streamed Response, numbered from 0."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        self.sequence += 1
        return _event(kind, self.sequence - 1, **data)


Pending = tuple[str, dict[str, Any]]  # an event not yet numbered: (type, fields)


def _item_events(index: int, item: dict[str, Any], reply: Reply) -> tuple[list[Pending], list[Pending]]:
    """(the deltas, the closing events) of the answer item at `index`; opening is the caller's."""
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "function_call":
        args = reply.tool_arguments or ""
        deltas = [
            ("response.function_call_arguments.delta", {"delta": args[i : i + TOOL_ARG_FRAGMENT], **where})
            for i in range(0, len(args), TOOL_ARG_FRAGMENT)
        ]
        done = {"arguments": args, "name": item["name"], **where}
        return deltas, [("response.function_call_arguments.done", done)]
    text = reply.content or ""
    deltas = [
        ("response.output_text.delta", {"content_index": 0, "delta": piece, "logprobs": [], **where})
        for piece in token_pieces(text)
    ]
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    closing = [
        ("response.output_text.done", {"content_index": 0, "text": text, "logprobs": [], **where}),
        ("response.content_part.done", {"content_index": 0, "part": part, **where}),
    ]
    return deltas, closing


async def stream_events(plan: ChatPlan, body: dict[str, Any], faults: Faults) -> AsyncIterator[bytes]:
    emit, response_id, reply = _Events(), "resp_" + secrets.token_hex(12), plan.replies[0]
    reasoning = _reasoning_items(plan, body)
    done_item = _answer_item(reply)
    index = len(reasoning)
    yield emit("response.created", response=response_object(body, response_id, [], "in_progress", None))
    if faults.malformed:
        yield b'event: response.in_progress\ndata: {"type": "response.in_progress", "response": {\n\n'
    yield emit("response.in_progress", response=response_object(body, response_id, [], "in_progress", None))
    for k, item in enumerate(reasoning):
        opened = {key: v for key, v in item.items() if key != "encrypted_content"}
        yield emit("response.output_item.added", output_index=k, item=opened)
        yield emit("response.output_item.done", output_index=k, item=item)
    opened = {**_answer_item(reply, "in_progress"), "id": done_item["id"]}
    yield emit("response.output_item.added", output_index=index, item=opened)
    if opened["type"] == "message":
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield emit(
            "response.content_part.added",
            item_id=opened["id"],
            output_index=index,
            content_index=0,
            part=part,
        )
    deltas, closing = _item_events(index, done_item, reply)
    for sent in range(len(deltas) + 1):
        at_end = sent == len(deltas)
        if faults.cut_after is not None and (at_end or sent >= faults.cut_after):
            yield CUT
            return
        if faults.error_after is not None and (at_end or sent >= faults.error_after):
            failed = response_object(body, response_id, reasoning, "failed", None)
            failed["error"] = {
                "code": "server_error",
                "message": "The server had an error while streaming (simulated).",
            }
            yield emit("response.failed", response=failed)
            return
        if not at_end:
            await sleep_ms(faults.chunk_delay_ms)
            yield emit(deltas[sent][0], **deltas[sent][1])
    for kind, fields in closing:
        yield emit(kind, **fields)
    yield emit("response.output_item.done", output_index=index, item=done_item)
    usage = None if faults.no_usage else responses_usage(plan.usage)
    final = response_object(body, response_id, [*reasoning, done_item], _status(reply), usage)
    yield emit(
        "response.completed" if final["status"] == "completed" else "response.incomplete", response=final
    )


async def responses(request: Request) -> Response:
    pre = await prelude(request, _inband)
    if pre.early is not None:
        return pre.early
    try:
        if not isinstance(pre.body.get("model"), str) or not pre.body["model"]:
            raise BadRequest("you must provide a model parameter", "model")
        plan = plan_chat(chat_body(pre.body), pre.faults)
    except BadRequest as exc:
        return bad_request(exc)
    headers = {"x-request-id": "req_" + secrets.token_hex(12)}
    if pre.body.get("stream") is True:
        return SimStream(
            stream_events(plan, pre.body, pre.faults), headers={**headers, "cache-control": "no-cache"}
        )
    reply = plan.replies[0]
    output = [*_reasoning_items(plan, pre.body), _answer_item(reply)]
    payload = dumps(
        response_object(
            pre.body, "resp_" + secrets.token_hex(12), output, _status(reply), responses_usage(plan.usage)
        )
    )
    if pre.faults.malformed:
        payload = payload[: len(payload) // 2]
    return Response(payload, media_type=JSON, headers=headers)


def routes() -> list[Route]:
    return [Route("/v1/responses", responses, methods=["POST"])]
