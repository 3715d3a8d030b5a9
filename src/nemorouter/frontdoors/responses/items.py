"""A Responses `input` (a string or a list of items) -> OpenAI chat messages, purely.

Items map one to one onto chat turns, except that the Responses API spreads one assistant turn
over several items (its text, each `function_call`, the `reasoning` before them) which chat
keeps in one assistant message: consecutive assistant items are gathered back into one.
What needs state we do not keep (`item_reference`, stored files) is a clear 400.
"""

from __future__ import annotations

from typing import Any

from nemorouter.errors import InvalidRequest
from nemorouter.frontdoors.responses.reasoning import decode_blocks
from nemorouter.providers.canonical import RESPONSES_REASONING

ROLES = frozenset({"user", "system", "developer", "assistant"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})


def chat_messages(value: Any, flat_name: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """The chat messages for `input`. `flat_name` maps (namespace, name) to the one-word name a
    namespaced function has in the chat body (`request.function_tools`)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("`input` must be a string or a non-empty list of items")
    turns = _Turns(flat_name)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"`input[{i}]` must be an object")
        turns.add(item, f"input[{i}]")
    return turns.done()


class _Turns:
    def __init__(self, flat_name: dict[tuple[str, str], str]) -> None:
        self.flat_name = flat_name
        self.messages: list[dict[str, Any]] = []
        self.thinking: list[dict[str, Any]] = []  # reasoning waiting for its assistant turn
        self.native: list[dict[str, Any]] = []  # reasoning items not ours, likewise (as sent)

    def done(self) -> list[dict[str, Any]]:
        return self.messages

    def add(self, item: dict[str, Any], where: str) -> None:
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            self._function_call(item, where)
        elif kind == "function_call_output":
            self._function_output(item, where)
        elif kind == "reasoning":
            blocks = decode_blocks(item.get("encrypted_content"))
            self.thinking += blocks
            if not blocks:  # an upstream's own (OpenAI's encrypted reasoning): for that upstream only
                self.native.append(item)
        elif kind == "item_reference":
            raise InvalidRequest(
                f"`{where}`: item references need stored responses, which this gateway does not keep; "
                "send the item itself (the Vercel AI SDK does so with "
                "`providerOptions: {openai: {store: false}}`)"
            )
        else:
            raise InvalidRequest(f"`{where}.type` {kind!r} is not supported in `input`")

    def _assistant(self) -> dict[str, Any]:
        """The open assistant turn (a new one unless the last message is an assistant's)."""
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant" or self.thinking or self.native:
            last = {"role": "assistant", "content": None}
            self.messages.append(last)
        if self.thinking:
            last["thinking_blocks"] = self.thinking
            self.thinking = []
        if self.native:
            last[RESPONSES_REASONING] = self.native
            self.native = []
        return last

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(f"`{where}.role` must be one of {', '.join(sorted(ROLES))}")
        content = item.get("content")
        if role == "assistant":
            text = content if isinstance(content, str) else "".join(_texts(content, where))
            turn = self._assistant()
            turn["content"] = (turn["content"] or "") + text if text else turn["content"]
            return
        if isinstance(content, str):
            self.messages.append({"role": role, "content": content})
        elif isinstance(content, list):
            parts = [_part(p, f"{where}.content[{k}]") for k, p in enumerate(content)]
            self.messages.append({"role": role, "content": parts})
        else:
            raise InvalidRequest(f"`{where}.content` must be a string or a list of parts")

    def _function_call(self, item: dict[str, Any], where: str) -> None:
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise InvalidRequest(f"`{where}`: a function_call needs `call_id` and `name`")
        if not isinstance(arguments, str):
            raise InvalidRequest(f"`{where}.arguments` must be a JSON string")
        namespace = item.get("namespace")
        if isinstance(namespace, str) and namespace:
            name = self.flat_name.get((namespace, name), join_name(namespace, name))
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        self._assistant().setdefault("tool_calls", []).append(call)

    def _function_output(self, item: dict[str, Any], where: str) -> None:
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"`{where}.call_id` is required")
        if isinstance(output, list):
            output = "".join(_texts(output, f"{where}.output"))
        if not isinstance(output, str):
            raise InvalidRequest(f"`{where}.output` must be a string or a list of text parts")
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": output})


def join_name(namespace: str, name: str) -> str:
    """A namespaced function's one-word chat name (chat has no namespaces): `ns__name`."""
    return f"{namespace}{name}" if namespace.endswith("_") else f"{namespace}__{name}"


def _texts(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(f"`{where}` must be a string or a list of parts")
    texts = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise InvalidRequest(f"`{where}[{k}]` must be a text part here, not {kind!r}")
    return texts


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part of a user/system/developer message, as chat's."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in TEXT_PARTS and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(
                f"`{where}`: an input_image needs `image_url` (a URL or a data URL); "
                "stored files (`file_id`) are not kept here"
            )
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise InvalidRequest(
                f"`{where}`: an input_file needs `file_data` (a base64 data URL); "
                "`file_id` and `file_url` need files this gateway does not fetch or keep"
            )
        file = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise InvalidRequest(f"`{where}.type` {kind!r} is not a supported content part")
