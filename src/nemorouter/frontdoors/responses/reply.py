"""Our chat.completion (with usage and cost) -> a Responses API `Response` object, purely.

The stream converter (`stream`) builds its items with the same functions, so a streamed answer
ends as the same Response. Its `id` is our request id (as `x-nemo-request-id` and
`GET /v1/generation?id=`); item ids derive from it. Usage follows the Responses conventions
(`input_tokens` includes cache reads) and adds `cost`, the exact charge.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from nemorouter.frontdoors.responses.reasoning import encode_blocks
from nemorouter.frontdoors.responses.request import ResponsesRequest
from nemorouter.money import Usd, parse_usd
from nemorouter.providers.canonical import RESPONSES_REASONING

# A chat finish_reason that cut the answer short -> the Response's incomplete_details.reason.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cost_of(value: Any) -> Usd:
    """Our `cost` as exact money, written back as a JSON number: a Usd already, or a
    Decimal/int/str parsed exactly (never a float)."""
    if isinstance(value, Usd):
        return value
    if isinstance(value, Decimal | int | str) and not isinstance(value, bool):
        return Usd(parse_usd(value))
    raise ValueError(f"cost must be an exact amount, not {type(value).__name__}")


def _details(usage: dict[str, Any], name: str) -> dict[str, Any]:
    found = usage.get(name)
    return found if isinstance(found, dict) else {}


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Our OpenAI chat usage (with cost) in the Responses conventions, cost kept."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    cached = min(_count(_details(usage, "prompt_tokens_details").get("cached_tokens")), prompt)
    writes = min(_count(_details(usage, "prompt_tokens_details").get("cache_write_tokens")), prompt - cached)
    reasoning = min(_count(_details(usage, "completion_tokens_details").get("reasoning_tokens")), completion)
    out: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": writes},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }
    if usage.get("cost") is not None:
        out["cost"] = cost_of(usage["cost"])
    return out


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(
    item_id: str,
    text: str,
    blocks: list[dict[str, Any]],
    request: ResponsesRequest,
    status: str = "completed",
    native: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The reasoning item: the upstream's reasoning text as its summary, and (when the client
    asked for `reasoning.encrypted_content`) the thinking blocks it must send back, or the
    `encrypted_content` of the upstream's own item (`native`, whose id it keeps)."""
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": native_id(native) or item_id,
        "summary": [{"type": "summary_text", "text": text}] if text else [],
        "status": status,
    }
    if request.encrypted_reasoning and blocks:
        item["encrypted_content"] = encode_blocks(blocks)
    elif (
        request.encrypted_reasoning
        and native is not None
        and isinstance(native.get("encrypted_content"), str)
    ):
        item["encrypted_content"] = native["encrypted_content"]
    return item


def native_id(native: dict[str, Any] | None) -> str | None:
    """The id of an upstream's own reasoning item (it must come back with the same id)."""
    found = native.get("id") if native is not None else None
    return found if isinstance(found, str) and found else None


def native_reasoning(found: Any) -> list[dict[str, Any]]:
    """The upstream's own reasoning items on a message or delta (`RESPONSES_REASONING`)."""
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


def function_call_item(
    call_id: str, chat_name: str, arguments: str, request: ResponsesRequest, status: str = "completed"
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "arguments": arguments,
        "status": status,
    }
    namespace, name = request.namespaced.get(chat_name, (None, chat_name))
    item["name"] = name
    if namespace is not None:
        item["namespace"] = namespace
    return item


def response_object(
    request: ResponsesRequest,
    response_id: str,
    created: Any,
    output: list[dict[str, Any]],
    *,
    status: str = "completed",
    usage: dict[str, Any] | None = None,
    finish: Any = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response: the request's echoed settings around `output`, in `status`."""
    incomplete = INCOMPLETE.get(finish) if isinstance(finish, str) else None
    if status == "completed" and incomplete is not None:
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created if isinstance(created, int | float) and not isinstance(created, bool) else 0,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if status == "incomplete" else None,
        "output": output,
        "usage": usage,
        **request.echo,
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def thinking_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = message.get("thinking_blocks")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def response_from_completion(
    body: dict[str, Any], request: ResponsesRequest, request_id: str
) -> dict[str, Any]:
    """The Response for our chat.completion `body`."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    found_id = body.get("id")
    response_id = found_id if isinstance(found_id, str) and found_id else request_id
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    reasoning = reasoning if isinstance(reasoning, str) else ""
    blocks = thinking_of(message)
    natives = native_reasoning(message.get(RESPONSES_REASONING))
    for k, native in enumerate(natives):  # the upstream's own items: each with its summary
        summary = "".join(
            str(p.get("text") or "")
            for p in native.get("summary") or ()
            if isinstance(p, dict) and p.get("type") == "summary_text"
        )
        output.append(reasoning_item(f"rs_{response_id}_{k}", summary, [], request, native=native))
    if (reasoning or blocks) and not natives:
        output.append(reasoning_item(f"rs_{response_id}", reasoning, blocks, request))
    text = _text(message.get("content"))
    refusal = message.get("refusal")
    if text or (isinstance(refusal, str) and refusal):
        item = message_item(f"msg_{response_id}", text)
        if isinstance(refusal, str) and refusal:
            item["content"].append({"type": "refusal", "refusal": refusal})
        output.append(item)
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            output.append(
                function_call_item(
                    str(call.get("id") or ""),
                    str(function.get("name") or ""),
                    arguments if isinstance(arguments, str) else "",
                    request,
                )
            )
    return response_object(
        request,
        response_id,
        body.get("created"),
        output,
        usage=responses_usage(body.get("usage")),
        finish=choice.get("finish_reason"),
    )
