"""`wrp eval tools`: tool selection on BFCL's real requests and tool schemas, at catalogue scale.

Each BFCL "live" row is a real user request with its own 2-37 candidate tools. The tools of all
rows (multiple, irrelevance, relevance) are pooled; each request is offered a catalogue of 50,
200 or 1,000 tools: its own tools plus others drawn from the pool with a seed fixed by the row
and the size, shuffled. BFCL live holds 704 distinct tool names, so the 1,000-tool catalogue
also holds other schemas of a name already in it, renamed ``<name>__<n>`` (a request cannot
offer two tools of one name); they compete for the kept slots like any tool, and are the
hardest competitors: another version of the very tool asked for.

Measured per catalogue size: for live_multiple rows, recall (the ground-truth tool, the row's own
schema, is kept) and the share of tool tokens saved; for live_irrelevance rows (no offered tool
applies), the share that keep no tool. Rows are split by a hash of their request text: the
defaults were chosen on ``tune`` rows (``--tune`` prints that grid); the report is of ``test``
rows, through the shipped code (:class:`ToolSelector` with the policy's settings).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.envelope import ChatRequest, RequestSection
from pipeline.evaluation.datasets import data_file
from pipeline.evaluation.progress import progress
from pipeline.evaluation.split import split_of
from pipeline.models.encoder import Encoder
from pipeline.policy import Policy, ToolSelectionConfig
from pipeline.workload.extractor import SignalExtractor
from pipeline.workload.structural import routing_text
from pipeline.workload.tool_selection import ToolSelection, ToolSelector, select

BFCL = "tools/bfcl"
SIZES = (50, 200, 1000)
KS = (1, 2, 3, 5, 8, 10, 15, 20, 30)
#: Share of rows (by request-text hash) reported; the others tuned the defaults.
TEST_SHARE = 0.5
SEED = 18


@dataclass(frozen=True)
class Row:
    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]  # bare BFCL functions
    answer: str | None  # the ground-truth tool's name; None for an irrelevance row

    @property
    def text(self) -> str:
        return routing_text(ChatRequest(messages=self.messages))

    @property
    def split(self) -> str:
        return "test" if split_of("tools:" + self.text, TEST_SHARE) == "eval" else "tune"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_rows(root: Path) -> tuple[list[Row], list[Row], list[dict[str, Any]]]:
    """(live_multiple rows with their answer, live_irrelevance rows, every distinct tool); a
    tool several rows share is one object, so a row's own tools are found in the pool."""
    pool: dict[str, dict[str, Any]] = {}

    def distinct(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [pool.setdefault(json.dumps(t, sort_keys=True), t) for t in tools]

    answers = {
        a["id"]: next(iter(a["ground_truth"][0]))
        for a in _lines(data_file(root, f"{BFCL}/possible_answer/BFCL_v4_live_multiple.json"))
    }
    multiple = [
        Row(r["id"], r["question"][0], distinct(r["function"]), answers[r["id"]])
        for r in _lines(data_file(root, f"{BFCL}/BFCL_v4_live_multiple.json"))
    ]
    irrelevance = [
        Row(r["id"], r["question"][0], distinct(r["function"]), None)
        for r in _lines(data_file(root, f"{BFCL}/BFCL_v4_live_irrelevance.json"))
    ]
    for r in _lines(data_file(root, f"{BFCL}/BFCL_v4_live_relevance.json")):
        distinct(r["function"])
    return multiple, irrelevance, list(pool.values())


def _aliases(pool: list[dict[str, Any]]) -> dict[int, str]:
    """A name per pooled schema that no other schema has: ``<name>__<n>`` for the n-th schema of
    a name (in pool order), the same in every catalogue, so its embedding is cached once."""
    seen: dict[str, int] = {}
    out = {}
    for tool in pool:
        seen[tool["name"]] = seen.get(tool["name"], 0) + 1
        out[id(tool)] = f"{tool['name']}__{seen[tool['name']]}"
    return out


def catalogue(row: Row, pool: list[dict[str, Any]], size: int) -> tuple[list[dict], int | None]:
    """OpenAI tools: the row's own and others from ``pool`` up to ``size``, shuffled with a seed
    of the row and size; and the ground-truth tool's index (None for irrelevance rows)."""
    seed = int.from_bytes(hashlib.sha256(f"{SEED}:{row.id}:{size}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    own = {id(t) for t in row.tools}
    chosen = list(row.tools)
    names = {t["name"] for t in chosen}
    others = [t for t in pool if id(t) not in own]
    rng.shuffle(others)
    renamed = []
    for tool in others:  # new names first; other schemas of a known name only when they run out
        if len(chosen) >= size:
            break
        if tool["name"] in names:
            renamed.append(tool)
            continue
        chosen.append(tool)
        names.add(tool["name"])
    alias = _aliases(pool)
    for tool in renamed:
        if len(chosen) >= size:
            break
        if alias[id(tool)] not in names:
            chosen.append({**tool, "name": alias[id(tool)]})
            names.add(alias[id(tool)])
    order = list(range(len(chosen)))
    rng.shuffle(order)
    answer = None
    if row.answer is not None:
        own_index = next(i for i, t in enumerate(row.tools) if t["name"] == row.answer)
        answer = order.index(own_index)
    return [{"type": "function", "function": chosen[i]} for i in order], answer


@dataclass
class Scored:
    """One request offered one catalogue: the selector's per-tool scores and tokens."""

    row: Row
    size: int
    body: ChatRequest
    query: np.ndarray
    similarity: np.ndarray
    overlap: np.ndarray
    tokens: list[int]
    answer: int | None


def score_rows(
    rows: list[Row], queries: np.ndarray, pool: list[dict], selector: ToolSelector, size: int
) -> list[Scored]:
    """Every row offered its catalogue of ``size`` tools, scored by ``selector``."""
    out = []
    for i, (row, query) in enumerate(zip(rows, queries, strict=True)):
        tools, answer = catalogue(row, pool, size)
        body = ChatRequest(messages=row.messages, tools=tools)
        similarity, overlap, tokens = selector.score(body, query)
        out.append(Scored(row, size, body, query, similarity, overlap, tokens, answer))
        if (i + 1) % 250 == 0 or i + 1 == len(rows):
            progress(f"catalogue of {size}: {i + 1}/{len(rows)} requests scored")
    return out


def measure(
    items: list[Scored], choose: Callable[[Scored], ToolSelection]
) -> dict[str, float | int | None]:
    """Recall, mean share of tool tokens saved, tools kept, and (irrelevance rows) the share
    keeping none, of the tools ``choose`` keeps for each request."""
    recalled, saved, none_kept, relevant, irrelevant, kept = 0, 0.0, 0, 0, 0, 0
    for item in items:
        choice = choose(item)
        saved += choice.saved_tokens / max(choice.offered_tokens, 1)
        kept += choice.kept
        if item.answer is None:
            irrelevant += 1
            none_kept += choice.kept == 0
        else:
            relevant += 1
            wanted = item.body.tools[item.answer]  # type: ignore[index]
            recalled += any(t is wanted for t in choice.tools)
    n = max(len(items), 1)
    return {
        "requests": len(items),
        "recall": round(recalled / relevant, 4) if relevant else None,
        "tokens_saved": round(saved / n, 4),
        "mean_kept": round(kept / n, 2),
        "keep_none": round(none_kept / irrelevant, 4) if irrelevant else None,
    }


def with_config(config: ToolSelectionConfig) -> Callable[[Scored], ToolSelection]:
    """A setting applied to the scores already computed (for sweeps; same :func:`select`)."""

    def choose(item: Scored) -> ToolSelection:
        scores = item.similarity + config.name_weight * item.overlap
        return select(config, item.body.tools or [], scores, item.tokens, set())

    return choose


def through_selector(selector: ToolSelector) -> Callable[[Scored], ToolSelection]:
    """The shipped path end to end: :meth:`ToolSelector.select` on each request."""
    return lambda item: selector.select(item.body, "default", item.query)


def _both(items: list[Scored], choose: Callable[[Scored], ToolSelection]) -> dict[str, Any]:
    """Recall and tokens saved on rows that need a tool; keep-none on rows that need none."""
    relevant = measure([i for i in items if i.answer is not None], choose)
    irrelevant = measure([i for i in items if i.answer is None], choose)
    return {
        "recall": relevant["recall"],
        "tokens_saved": relevant["tokens_saved"],
        "mean_kept": relevant["mean_kept"],
        "keep_none": irrelevant["keep_none"],
        "irrelevant_tokens_saved": irrelevant["tokens_saved"],
        "rows": relevant["requests"],
        "irrelevant_rows": irrelevant["requests"],
    }


#: The tuning grid (``--tune``): name bonus x threshold x k, at 200 tools.
TUNE_NAME_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
TUNE_THRESHOLDS = (None, 0.1, 0.15, 0.2, 0.25)
TUNE_KS = (5, 8, 10, 15, 20)
TUNE_SIZE = 200


def eval_tools(root: Path, encoder: Encoder, policy: Policy, tune: bool = False) -> dict[str, Any]:
    """The report: per catalogue size, per k (top-k alone, and with the shipped threshold and
    name bonus) and the shipped setting, on test rows, and the signals stage's CPU per request
    with tool selection on and off; with ``tune``, the grid on tune rows."""
    config = policy.tools
    multiple, irrelevance, pool = load_rows(root)
    split = "tune" if tune else "test"
    rows = [r for r in multiple + irrelevance if r.split == split]
    progress(
        f"BFCL live: {len(multiple)} requests needing a tool, {len(irrelevance)} needing none, "
        f"{len(pool)} distinct tools; {len(rows)} {split} rows (split by request-text hash)"
    )
    progress(f"setting: {config.model_dump(exclude={'tenants', 'enabled'})}")
    started = time.perf_counter()
    selector = ToolSelector(
        config.model_copy(update={"cache_size": 4 * len(pool)}),
        encoder.encode,
        encoder.count_tokens,
    )
    queries = encoder.encode([r.text for r in rows])
    report: dict[str, Any] = {
        "setup": {
            "data": f"{BFCL}: live_multiple (+ possible_answer) and live_irrelevance",
            "split": split,
            "rows": sum(r.answer is not None for r in rows),
            "irrelevant_rows": sum(r.answer is None for r in rows),
            "distinct_tools": len(pool),
            "distinct_names": len({t["name"] for t in pool}),
            "encoder": f"{encoder.name}/{encoder.max_tokens}",
            "seed": SEED,
            "setting": config.model_dump(exclude={"tenants", "enabled", "cache_size"}),
        },
    }
    if tune:
        items = score_rows(rows, queries, pool, selector, TUNE_SIZE)
        report["tune"] = [
            {
                "name_weight": w,
                "threshold": t,
                "k": k,
                **_both(
                    items, with_config(ToolSelectionConfig(top_k=k, threshold=t, name_weight=w))
                ),
            }
            for w in TUNE_NAME_WEIGHTS
            for t in TUNE_THRESHOLDS
            for k in TUNE_KS
        ]
    else:
        report["sizes"] = {}
        for size in SIZES:
            items = score_rows(rows, queries, pool, selector, size)
            top_k_only = config.model_copy(update={"threshold": None})
            timer = time.process_time()
            shipped = _both(items, through_selector(selector))
            cpu_ms = 1000 * (time.process_time() - timer) / len(items)
            report["sizes"][size] = {
                "shipped": {**shipped, "cpu_ms_per_request": round(cpu_ms, 2)},
                "by_k": {
                    k: {
                        "top_k": _both(
                            items, with_config(top_k_only.model_copy(update={"top_k": k}))
                        ),
                        "with_threshold": _both(
                            items, with_config(config.model_copy(update={"top_k": k}))
                        ),
                    }
                    for k in KS
                },
            }
        report["signals_cpu_ms"] = signals_cpu(
            [r for r in rows if r.answer is not None][:CPU_ROWS], pool, encoder, policy
        )
    report["setup"]["seconds"] = round(time.perf_counter() - started)
    return report


#: Requests the signals stage's CPU is measured on, per catalogue size.
CPU_ROWS = 100


def signals_cpu(
    rows: list[Row], pool: list[dict], encoder: Encoder, policy: Policy
) -> dict[int, dict[str, float]]:
    """CPU milliseconds the signals stage's extractor spends per request (one at a time, tool
    embeddings cached), with the policy's tool selection and with it off."""
    extractors = {
        "selection_on": SignalExtractor(policy, encoder),
        "selection_off": SignalExtractor(
            policy.model_copy(update={"tools": ToolSelectionConfig()}), encoder
        ),
    }
    out: dict[int, dict[str, float]] = {}
    for size in SIZES:
        requests = [
            RequestSection(body=ChatRequest(messages=r.messages, tools=catalogue(r, pool, size)[0]))
            for r in rows
        ]
        out[size] = {}
        for name, extractor in extractors.items():
            for request in requests:  # a first pass fills the tool cache
                extractor.extract_narrowed([request])
            timer = time.process_time()
            for request in requests:
                extractor.extract_narrowed([request])
            out[size][name] = round(1000 * (time.process_time() - timer) / len(requests), 2)
        progress(f"signals stage CPU at {size} tools: {out[size]} ms/request")
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    setup = report["setup"]
    lines = [
        f"tool selection on {setup['data']}",
        f"{setup['split']} rows: {setup['rows']} needing a tool, {setup['irrelevant_rows']} "
        f"needing none; {setup['distinct_tools']} distinct tools ({setup['distinct_names']} "
        f"names) pooled into catalogues; encoder {setup['encoder']}; seed {setup['seed']}",
        f"shipped setting: {setup['setting']}",
    ]
    if "tune" in report:
        lines.append(f"tuning grid at {TUNE_SIZE} tools (tune rows):")
        lines.append("  name_w  thresh     k  recall  saved  kept  keep-none")
        for r in report["tune"]:
            lines.append(
                f"  {r['name_weight']:>6}  {r['threshold']!s:>6}  {r['k']:>4}  "
                f"{_pct(r['recall']):>6}  {_pct(r['tokens_saved']):>6}  {r['mean_kept']:>4}  "
                f"{_pct(r['keep_none']):>8}"
            )
        return "\n".join(lines)
    lines.append(
        "recall: the ground-truth tool kept; saved: mean share of tool tokens dropped (rows "
        "needing a tool); keep-none: rows needing no tool that keep none"
    )
    for size, section in report["sizes"].items():
        s = section["shipped"]
        lines.append(
            f"== {size} tools: shipped setting  recall {_pct(s['recall'])}  saved "
            f"{_pct(s['tokens_saved'])}  kept {s['mean_kept']}  keep-none {_pct(s['keep_none'])}"
            f"  CPU {s['cpu_ms_per_request']} ms/request (tool embeddings cached)"
        )
        lines.append("     k | top-k alone: recall  saved | + threshold: recall  saved  keep-none")
        for k, m in section["by_k"].items():
            a, b = m["top_k"], m["with_threshold"]
            lines.append(
                f"  {k:>4} |              {_pct(a['recall']):>6} {_pct(a['tokens_saved']):>6} |"
                f"              {_pct(b['recall']):>6} {_pct(b['tokens_saved']):>6}  "
                f"{_pct(b['keep_none']):>8}"
            )
    lines.append("signals stage CPU per request (ms, one request at a time, tool cache warm):")
    for size, cpu in report["signals_cpu_ms"].items():
        lines.append(
            f"  {size:>5} tools: selection on {cpu['selection_on']:>6}  "
            f"off {cpu['selection_off']:>6}"
        )
    lines.append(f"({setup['seconds']} s)")
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tools-{report['setup']['split']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
