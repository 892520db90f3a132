"""What the learned safety detectors read: every message that can carry instructions, cut into
encoder windows, within a budget of windows per request.

Each role is read by the detectors that make sense for it: a user turn can be a jailbreak, a
harmful request, carry an injection (a pasted document) or need moderation; a tool result, a
retrieved passage or a system prompt can carry injected instructions. Assistant turns are the
model's own words and are not read.

User turns are read in windows of the encoder's token budget; the newest one's first window is
the head and tail the signals stage already embedded, the others read the middle it drops.
Tool results and system prompts
are read in short half-overlapping windows: an injected instruction is a sentence among data,
and a window it fills scores it as the instruction it is, where a long window's mean embedding
drowns it. Each kind has its budget of windows per request, spent in reading order (newest user
turn, tool results newest first, system prompts, earlier user turns newest first): one window
per message while it lasts, then more in the same order. A message with more windows than it
gets is read in windows spread evenly from its start to its end. What a budget left out is
counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.envelope import ChatRequest
from pipeline.policy import ScanConfig
from pipeline.workload.structural import routing_text

DETECTORS = ("jailbreak", "injection", "harmful")
#: Which learned detectors read which role (moderation reads what ``harmful`` reads).
ROLE_DETECTORS: dict[str, tuple[str, ...]] = {
    "user": DETECTORS,
    "system": ("injection",),
    "developer": ("injection",),
    "tool": ("injection",),
}
#: Roles read in short windows: content in which an instruction may hide among data.
DATA_ROLES = ("system", "developer", "tool")
#: Roles whose content should only be data (a tool's answer): there any instruction to the
#: model is an injection. A system prompt is instructions by design.
TOOL_ROLES = ("tool",)
#: Roles in the order the budget reaches them (the newest user turn comes before all).
PRIORITY = {"tool": 0, "system": 1, "developer": 1, "user": 2}

#: text, limit, window size (None: the encoder's budget), overlap, around head and tail ->
#: (ids of at most ``limit`` windows, windows left out); :meth:`Encoder.windows`
Windows = Callable[[str, int, int | None, float, bool], tuple[list[list[int]], int]]


def detector_scores(probs: np.ndarray, labels: list[str]) -> np.ndarray:
    """(rows, 4) from the safety head's class probabilities: jailbreak, injection, harmful as
    read in a user turn, and injection as read in a tool result (the injection and jailbreak
    probabilities together: an instruction to the model is out of place there)."""
    jailbreak, injection, harmful = (probs[:, labels.index(d)] for d in DETECTORS)
    return np.stack([jailbreak, injection, harmful, injection + jailbreak], axis=1)


#: The column of :func:`detector_scores` each detector reads in a tool result.
IN_TOOL = {"injection": 3}


@dataclass(frozen=True)
class Window:
    message: int  # index in the request's messages
    role: str
    index: int  # the window's place among the message's windows
    ids: list[int]
    routing: bool  # the routing text whole: the signals stage's embedding is this window's


@dataclass(frozen=True)
class Plan:
    windows: list[Window]
    messages: int  # messages read
    skipped: int  # windows the budget left out


#: Messages considered per request (system prompts, then the newest others): the budgets could
#: not reach further ones in any case, and a request of thousands of turns must not cost a
#: tokenizer pass per turn.
MAX_MESSAGES = 64


def reading_order(body: ChatRequest) -> list[int]:
    """Indices of the messages to read, in the order the budgets reach them: the newest user
    turn, tool results (newest first), system prompts, earlier user turns (newest first)."""
    readable = [
        i for i, m in enumerate(body.messages) if m.role in ROLE_DETECTORS and m.text().strip()
    ]
    if len(readable) > MAX_MESSAGES:  # system prompts, and the newest of the rest
        system = [i for i in readable if PRIORITY[body.messages[i].role] == 1][: MAX_MESSAGES // 4]
        rest = [i for i in readable if i not in system]
        readable = sorted(system + rest[len(system) - MAX_MESSAGES :])
    users = [i for i in readable if body.messages[i].role == "user"]
    newest = users[-1:] if users else []
    rest = sorted(
        (i for i in readable if i not in newest),
        key=lambda i: (PRIORITY[body.messages[i].role], -i),
    )
    return newest + rest


def _share(cut: dict[int, tuple[list[list[int]], int]], budget: int) -> dict[int, int]:
    """Windows given to each message (in the dict's order): one each while the budget lasts,
    then the rest in the same order."""
    given = dict.fromkeys(cut, 0)
    left = budget
    for i in cut:
        if left:
            given[i], left = 1, left - 1
    for i, (ids, _) in cut.items():
        more = min(len(ids) - given[i], left)
        given[i], left = given[i] + more, left - more
    return given


def plan(body: ChatRequest, windows: Windows, config: ScanConfig) -> Plan:
    """The windows to read in ``body``: user turns in full-size windows within
    ``config.max_windows``, data (tool results, system prompts) in short half-overlapping
    windows within ``config.data_windows``."""
    order = reading_order(body)
    routing = routing_text(body)
    data = [i for i in order if body.messages[i].role in DATA_ROLES]
    # the newest user turn is the routing text: its first window is the head and tail the
    # signals stage embedded (reused), the others read the middle that drops
    newest = next((i for i in order if body.messages[i].role == "user"), -1)
    short = config.data_window_tokens
    cuts = {
        False: {
            i: windows(body.messages[i].text(), config.max_windows + 1, None, 0.25, i == newest)
            for i in order
            if i not in data
        },
        True: {
            i: windows(body.messages[i].text(), max(1, config.data_windows), short, 0.5, False)
            for i in data
        },
    }
    chosen: list[Window] = []
    # messages past the newest MAX_MESSAGES count one skipped window each (at least)
    skipped = sum(1 for m in body.messages if m.role in ROLE_DETECTORS and m.text().strip()) - len(
        order
    )
    read = 0
    for in_data, cut in cuts.items():
        # the newest user turn's head and tail are reused from routing: that window is free
        free = 1 if not in_data and newest in cut else 0
        given = _share(cut, config.data_windows if in_data else config.max_windows + free)
        for i, (ids, left) in cut.items():
            skipped += len(ids) + left - given[i]
            if not given[i]:
                continue
            read += 1
            picks = np.linspace(0, len(ids) - 1, given[i]).round().astype(int).tolist()
            role, text = body.messages[i].role, body.messages[i].text()
            reused = i == newest and text == routing
            chosen += [Window(i, role, p, ids[p], reused and p == 0) for p in sorted(set(picks))]
    return Plan(chosen, messages=read, skipped=skipped)
