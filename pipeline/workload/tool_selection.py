"""Tool selection: keep only the tools a request is likely to need, and count what that saves.

Agents send every tool schema on every call. Each tool is scored against the request's routing
text (the last user turn, whose embedding the signals stage computes anyway) by the cosine of
its embedding (name split into words, description, parameter names) plus a small bonus for
words of the tool's name the request uses. The ``top_k`` best scoring at least ``threshold``
are kept, and always: the tools the conversation already called (an agent loop must be able to
call them again) and the tool ``tool_choice`` names. A request with fewer than ``min_tools``
tools is left alone.

Tool embeddings and token counts are cached in the process by the tool's JSON (a bounded LRU):
agents resend the same tools on every call, so only new tools are embedded, in one batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.envelope import ChatRequest
from pipeline.policy import ToolSelectionConfig

#: Words of a tool's name or a request: runs of letters or digits, camelCase split.
WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
#: Words too common in tool names to tell tools apart.
STOP_WORDS = frozenset("a an and api by for from get in is it of on or set the to v with".split())


@dataclass(frozen=True)
class ToolSelection:
    """The tools kept (the request's own dicts, in their order) and what they cost."""

    tools: list[dict[str, Any]]
    offered: int
    offered_tokens: int
    kept_tokens: int

    @property
    def kept(self) -> int:
        return len(self.tools)

    @property
    def saved_tokens(self) -> int:
        return self.offered_tokens - self.kept_tokens


def tool_spec(tool: dict[str, Any]) -> dict[str, Any]:
    """The function part of an OpenAI tool (``{"type": "function", "function": {...}}``), or
    the tool itself when it is given bare."""
    spec = tool.get("function", tool)
    return spec if isinstance(spec, dict) else {}


def tool_name(tool: dict[str, Any]) -> str:
    name = tool_spec(tool).get("name")
    return name if isinstance(name, str) else ""


def words(text: str) -> list[str]:
    """Lower-case words, camelCase and snake_case split."""
    return [w.lower() for w in WORD.findall(text)]


def tool_text(tool: dict[str, Any]) -> str:
    """What a tool is embedded as: its name in words, its description, its parameter names."""
    spec = tool_spec(tool)
    description = spec.get("description")
    parameters = spec.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    names = " ".join(words(" ".join(properties))) if isinstance(properties, dict) else ""
    parts = [
        " ".join(words(tool_name(tool))),
        description if isinstance(description, str) else "",
        f"Parameters: {names}" if names else "",
    ]
    return ". ".join(p for p in parts if p)


def called_tools(body: ChatRequest) -> set[str]:
    """Names of the tools the conversation's assistant turns already called."""
    names: set[str] = set()
    for message in body.messages:
        for call in message.tool_calls or []:
            function = call.get("function") if isinstance(call, dict) else None
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str):
                names.add(name)
    return names


def forced_tool(body: ChatRequest) -> str | None:
    """The function ``tool_choice`` names, if it names one."""
    choice = getattr(body, "tool_choice", None)
    if not isinstance(choice, dict):
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    return name if isinstance(name, str) else None


def name_words(tool: dict[str, Any]) -> frozenset[str]:
    """The distinctive words of a tool's name (common ones and very short ones left out)."""
    return frozenset(w for w in words(tool_name(tool)) if w not in STOP_WORDS and len(w) > 2)


def name_overlap(request_words: set[str], name: frozenset[str]) -> float:
    """Share of a tool name's distinctive words that the request uses (0 to 1)."""
    return len(name & request_words) / len(name) if name else 0.0


@dataclass(frozen=True)
class ToolEntry:
    """What the selector keeps per distinct tool."""

    vector: np.ndarray
    tokens: int
    name_words: frozenset[str]


def select(
    config: ToolSelectionConfig,
    tools: Sequence[dict[str, Any]],
    scores: np.ndarray,
    tokens: Sequence[int],
    keep_names: set[str],
    require_one: bool = False,
) -> ToolSelection:
    """Keep the ``top_k`` best ``scores`` at or above the threshold, plus every tool named in
    ``keep_names``; at least one tool when ``require_one`` (``tool_choice: required``)."""
    order = np.argsort(-scores, kind="stable")
    chosen = {
        int(i)
        for i in order[: config.top_k]
        if config.threshold is None or scores[i] >= config.threshold
    }
    chosen |= {i for i, tool in enumerate(tools) if tool_name(tool) in keep_names}
    if require_one and not chosen and len(tools):
        chosen.add(int(order[0]))
    kept = sorted(chosen)
    return ToolSelection(
        tools=[tools[i] for i in kept],
        offered=len(tools),
        offered_tokens=int(sum(tokens)),
        kept_tokens=int(sum(tokens[i] for i in kept)),
    )


#: Request fields that are only valid next to a non-empty ``tools``.
TOOL_ONLY_FIELDS = ("tool_choice", "parallel_tool_calls")


def narrowed_body(body: ChatRequest, selection: ToolSelection) -> ChatRequest:
    """``body`` with only the kept tools; with none kept, without ``tools`` and the fields
    that need them (OpenAI rejects an empty ``tools`` and a ``tool_choice`` without tools)."""
    if selection.tools:
        return body.model_copy(update={"tools": selection.tools})
    extra = body.model_extra or {}
    return body.model_copy(
        update={"tools": None, **{f: None for f in TOOL_ONLY_FIELDS if f in extra}}
    )


class ToolSelector:
    """Scores and narrows a request's tools; caches tool embeddings and token counts.

    ``encode`` embeds texts (L2-normalised rows); ``count_tokens`` counts a text's tokens.
    """

    def __init__(
        self,
        config: ToolSelectionConfig,
        encode: Callable[[list[str]], np.ndarray],
        count_tokens: Callable[[str], int],
    ) -> None:
        self.config = config
        self.encode = encode
        self.count_tokens = count_tokens
        self._tools: OrderedDict[str, ToolEntry] = OrderedDict()

    def needs_selection(self, body: ChatRequest, tenant: str) -> bool:
        """Whether this request's tools are narrowed (enabled for the tenant, enough tools)."""
        config = self.config.for_tenant(tenant)
        return config.enabled and len(body.tools or []) >= config.min_tools

    def select(self, body: ChatRequest, tenant: str, query: np.ndarray) -> ToolSelection:
        """The tools to keep for a request whose routing text embeds to ``query``."""
        config = self.config.for_tenant(tenant)
        similarity, overlap, tokens = self.score(body, query)
        keep = called_tools(body)
        forced = forced_tool(body)
        if forced is not None:
            keep.add(forced)
        required = getattr(body, "tool_choice", None) == "required"
        scores = similarity + config.name_weight * overlap
        return select(config, body.tools or [], scores, tokens, keep, required)

    def score(
        self, body: ChatRequest, query: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Per tool: cosine to ``query``, share of its name's words the user turns use, and
        its tokens."""
        entries = self.entries(body.tools or [])
        if not entries:
            return np.zeros(0, np.float32), np.zeros(0, np.float32), []
        request_words = set(words(_conversation_text(body)))
        similarity = np.stack([e.vector for e in entries]) @ query.astype(np.float32)
        overlap = np.array([name_overlap(request_words, e.name_words) for e in entries])
        return similarity, overlap.astype(np.float32), [e.tokens for e in entries]

    def entries(self, tools: Sequence[dict[str, Any]]) -> list[ToolEntry]:
        """Each tool's cached entry, embedding the tools not cached yet in one batch."""
        keys = [_digest(tool) for tool in tools]
        missing = {k: t for k, t in zip(keys, tools, strict=True) if k not in self._tools}
        if missing:
            vectors = self.encode([tool_text(t) for t in missing.values()])
            for (key, tool), vector in zip(missing.items(), vectors, strict=True):
                tokens = self.count_tokens(json.dumps(tool))
                self._tools[key] = ToolEntry(vector, tokens, name_words(tool))
        for key in keys:
            self._tools.move_to_end(key)
        while len(self._tools) > max(self.config.cache_size, len(keys)):
            self._tools.popitem(last=False)
        return [self._tools[key] for key in keys]


def _conversation_text(body: ChatRequest) -> str:
    """The user turns' text, the lexical score's view of the conversation."""
    return "\n".join(m.text() for m in body.messages if m.role == "user")


def _digest(tool: dict[str, Any]) -> str:
    """The cache key of a tool: its JSON as sent (an agent resends its tools unchanged)."""
    return hashlib.blake2b(json.dumps(tool).encode(), digest_size=16).hexdigest()
