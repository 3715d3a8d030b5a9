"""A chat prompt counted with its model family's own tokenizer, offline.

Needed only when a stream ends before the provider reported usage (a client that hangs up
after the provider answered): the customer then pays for the prompt the provider bills us
for. OpenAI's families have public BPE tables (`o200k_base`, `cl100k_base`); the pinned
`bpe-openai` wheel carries them inside its Rust extension, so nothing is fetched at run time
(tiktoken downloads its tables on first use, which a gateway without internet cannot do).
Other families have no offline tokenizer here: `count_chat_prompt` answers None and the
caller charges the hold's prompt bound instead (docs/money-trail.md).

The chat overhead follows OpenAI's cookbook (`num_tokens_from_messages`): 3 tokens per
message, 1 more for a `name`, 3 to prime the reply; every string of a message is counted
(role, content, name, tool calls). `tools`, `functions` and `response_format` are counted as
their JSON text, longer than the rendering OpenAI feeds the model. A part no text tokenizer
can count (an image, audio, a file, a type we do not know) makes the whole count None.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import orjson

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Model-name prefixes of OpenAI's families -> their encoding (tiktoken's model table).
# omni-moderation: built on GPT-4o (OpenAI, "Upgrading the Moderation API", 2024-09-26); it
# reports no usage, so this count is only the estimate its free record carries.
_O200K = (
    "gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss", "codex",
    "omni-moderation",
)  # fmt: skip
_CL100K = ("gpt-4", "gpt-3.5", "gpt-35")  # after the o200k ones: "gpt-4" is a prefix of "gpt-4o"
_BINDINGS = "bpe_openai._bindings"  # the Rust extension (its API: bpe_openai/_bindings.pyi)


class _Counter(Protocol):
    def count_till_limit(self, text: str, token_limit: int) -> int | None: ...


def encoding_for(model_names: Iterable[str]) -> str | None:
    """The BPE encoding of the first name that belongs to an OpenAI family, else None.

    Names are the catalog id (`openai/gpt-4o`) and the provider's own id: an Azure deployment
    name may be anything, the catalog id still tells the family."""
    for name in model_names:
        bare = name.rsplit("/", 1)[-1].lower()
        if bare.startswith(_O200K):
            return "o200k_base"
        if bare.startswith(_CL100K):
            return "cl100k_base"
    return None


@cache
def _tokenizer(encoding: str) -> _Counter:
    """The Rust crate's tokenizer, loaded on first use (about 0.2 s and 65 MB; most gateways
    never need it).

    Its extension module is loaded by itself, not through `import bpe_openai`: that package's
    `__init__` decodes every table into Python dicts at import (0.3 s and 70 MB more, and a
    DeprecationWarning), which counting does not use. It is registered under its own name, so
    a later `import bpe_openai` reuses it (a PyO3 module initialises once per process)."""
    module = sys.modules.get(_BINDINGS)
    if module is None:
        package = importlib.util.find_spec("bpe_openai")  # finds the package without running it
        folders = package.submodule_search_locations if package is not None else None
        found = [
            p
            for f in folders or ()
            for p in sorted(Path(f).glob("_bindings*"))
            if p.suffix in (".so", ".pyd")
        ]
        spec = importlib.util.spec_from_file_location(_BINDINGS, found[0]) if found else None
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError("bpe-openai is not installed (pyproject.toml pins it)")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[_BINDINGS] = module
    counter: _Counter = module.tokenizer_for_encoding(encoding)
    return counter


def _content_texts(content: Any, out: list[str]) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        out.append(content)
        return True
    if not isinstance(content, list):
        return False
    for part in content:
        if not isinstance(part, dict):
            return False
        kind = part.get("type")
        text = part.get("text") if kind == "text" else part.get("refusal") if kind == "refusal" else None
        if not isinstance(text, str):
            return False  # image_url, input_audio, file, or a part we cannot read as text
        out.append(text)
    return True


def _call_texts(call: Any, out: list[str]) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return False
    out.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return True


def chat_texts(body: dict[str, Any]) -> tuple[list[str], int] | None:
    """Every string of a chat prompt and the fixed overhead tokens, or None when some part
    cannot be counted as text."""
    texts: list[str] = []
    overhead = REPLY_PRIMING
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in messages:
        if not isinstance(message, dict):
            return None
        overhead += TOKENS_PER_MESSAGE
        if not _content_texts(message.get("content"), texts):
            return None
        for field in ("role", "name", "tool_call_id"):
            if isinstance(message.get(field), str):
                texts.append(message[field])
        if isinstance(message.get("name"), str):
            overhead += TOKENS_PER_NAME
        calls = message.get("tool_calls") or []
        legacy = message.get("function_call")
        if not isinstance(calls, list):
            return None
        for call in [*calls, {"function": legacy}] if legacy else calls:
            if not _call_texts(call, texts):
                return None
    for field in ("tools", "functions", "response_format"):
        if body.get(field):
            texts.append(orjson.dumps(body[field]).decode())
    return texts, overhead


def count_chat_prompt(body: dict[str, Any], model_names: Iterable[str], limit: int) -> int | None:
    """The prompt's tokens by its family's tokenizer, at most `limit` (the caller's bound: no
    more work, and never more, than that); None when no offline tokenizer fits the family or
    the prompt holds parts that are not text."""
    encoding = encoding_for(model_names)
    if encoding is None:
        return None
    found = chat_texts(body)
    if found is None:
        return None
    texts, total = found
    counter = _tokenizer(encoding)
    for text in texts:
        counted = counter.count_till_limit(text, limit - total) if total < limit else None
        if counted is None:  # past the bound: the bound it is, and the rest is not tokenized
            return limit
        total += int(counted)
    return min(total, limit)
