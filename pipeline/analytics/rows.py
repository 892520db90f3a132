"""Messages -> ClickHouse rows, columns by name (tables: :mod:`pipeline.analytics.migrations`).

No raw PII at rest: every text column is scrubbed here (:mod:`pipeline.safety.scrub`), whatever
the request's outcome, and a cached answer that holds PII is not snapshotted at all.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from pipeline.envelope import (
    CacheEntry,
    DeadLetter,
    Envelope,
    Feedback,
    PoolState,
    RouterState,
)
from pipeline.safety.scrub import scrub_bytes, scrub_text, scrub_value, scrubbed_envelope


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


#: Left out of the envelope a request row keeps: the trail, the embedding, and the cache key (a
#: hash of the request's text, which could confirm a guess at what scrubbing replaced).
STORED_WITHOUT = {"trail": True, "signals": {"embedding"}, "decision": {"cache_key"}}

REQUEST_COLUMNS = [
    "request_id",
    "tenant",
    "session_id",
    "created_at",
    "completed_at",
    "status",
    "error_type",
    "final_stage",
    "prompt_tokens",
    "turns",
    "tools_present",
    "tools_offered",
    "tools_kept",
    "tool_tokens",
    "tool_tokens_saved",
    "images_present",
    "context_class",
    "domain",
    "complexity",
    "language",
    "safety_action",
    "jailbreak_score",
    "injection_score",
    "harmful_score",
    "safety_triggers",
    "moderation_categories",
    "pii_entities",
    "decision",
    "strategy",
    "candidates",
    "explored",
    "sticky",
    "switched_from",
    "cache_hit",
    "policy_version",
    "model",
    "pool",
    "endpoint",
    "attempts",
    "latency_ms",
    "pool_latency_ms",
    "completion_tokens",
    "cost_usd",
    "ttft_ms",
    "gpu_cost_usd",
    "energy_j",
    "fallback_from",
    "baseline_model",
    "baseline_cost_usd",
    "api_key",
    "budget",
    "budget_action",
    "answer_action",
    "answer_triggers",
    "answer_pii_entities",
    "answer_redacted",
    "answer_attack_complied",
    "trail",
    "envelope",
]


def request_row(env: Envelope) -> list[Any]:
    """One row holding the whole trail of a finished request, its text scrubbed of PII."""
    req, sig, saf, dec, res, out = (
        env.request,
        env.signals,
        env.safety,
        env.decision,
        env.result,
        env.outcome,
    )
    completed = res.completed_at if res else req.created_at
    screen = res.screen if res else None
    return [
        req.request_id,
        req.tenant,
        req.session_id or "",
        ts(req.created_at),
        ts(completed),
        res.status if res else "unknown",
        res.error.type if res and res.error else "",
        res.stage if res else "",
        out.prompt_tokens if out else (sig.prompt_tokens if sig else 0),
        sig.turns if sig else 0,
        sig.tools_present if sig else False,
        sig.tools_offered if sig else 0,
        sig.tools_kept if sig else 0,
        sig.tool_tokens if sig else 0,
        sig.tool_tokens_saved if sig else 0,
        sig.images_present if sig else False,
        sig.context_class if sig else "",
        sig.domain if sig else "",
        sig.complexity if sig else "",
        sig.language if sig else "",
        saf.action if saf else "",
        saf.jailbreak_score if saf else 0.0,
        saf.injection_score if saf else 0.0,
        saf.harmful_score if saf else 0.0,
        saf.triggers if saf else [],
        saf.categories if saf else [],
        sorted({f.entity for f in saf.pii}) if saf else [],
        dec.decision if dec else "",
        dec.strategy if dec else "",
        dec.candidates if dec else [],
        dec.explored if dec else False,
        dec.sticky if dec else False,
        (dec.switched_from or "") if dec else "",
        dec.cache_hit if dec else False,
        dec.policy_version if dec else "",
        out.model if out else (dec.model if dec else ""),  # the model that served, fallback
        out.pool if out else (dec.pool if dec else ""),  # included (fallback_from: the routed)
        out.endpoint if out else "",
        out.attempts if out else 0,
        max(0.0, (completed - req.created_at) * 1000),
        out.latency_ms if out else 0.0,
        out.completion_tokens if out else 0,
        out.cost_usd if out else 0.0,
        out.ttft_ms if out and out.ttft_ms is not None else 0.0,
        out.gpu_cost_usd if out else 0.0,
        out.energy_j if out else 0.0,
        (out.fallback_from or "") if out else "",
        (out.baseline_model or "") if out else "",
        out.baseline_cost_usd if out else 0.0,
        req.api_key or "",
        (dec.budget or "") if dec else "",
        (dec.budget_action or "") if dec else "",
        screen.action if screen else "",
        screen.triggers if screen else [],
        screen.pii if screen else [],
        screen.redacted if screen else 0,
        screen.attack_complied if screen else False,
        json.dumps([s.model_dump() for s in env.trail]),
        json.dumps(scrubbed_envelope(env, STORED_WITHOUT)),
    ]


ATTEMPT_COLUMNS = [
    "request_id",
    "attempt",
    "tenant",
    "decision",
    "model",
    "pool",
    "endpoint",
    "status",
    "error_type",
    "started_at",
    "latency_ms",
    "ttft_ms",
]


def attempt_rows(env: Envelope) -> list[list[Any]]:
    """One row per endpoint call made for a finished request (none for a cache hit)."""
    o = env.outcome
    if o is None:
        return []
    tenant = env.request.tenant
    return [
        [
            o.request_id,
            number,
            tenant,
            o.decision,
            a.model,
            a.pool,
            a.endpoint,
            a.status,
            a.error_type or "",
            ts(a.started_at),
            a.latency_ms,
            a.ttft_ms or 0.0,
        ]
        for number, a in enumerate(o.attempt_log, 1)
    ]


POOL_STATE_COLUMNS = [
    "pool",
    "endpoint",
    "instance",
    "sampled_at",
    "requests",
    "errors",
    "error_rate",
    "in_flight",
    "capacity",
    "queue_estimate",
    "ttft_ms_ewma",
    "latency_ms_ewma",
    "kv_usage",
    "circuit",
]


def pool_state_row(p: PoolState) -> list[Any]:
    return [
        p.pool,
        p.endpoint,
        p.instance,
        ts(p.updated_at),
        p.requests,
        p.errors,
        p.error_rate,
        p.in_flight,
        p.capacity or 0,
        p.queue_estimate,
        p.ttft_ms_ewma or 0.0,
        p.latency_ms_ewma,
        p.kv_usage or 0.0,
        p.circuit,
    ]


ROUTER_STATE_COLUMNS = [
    "decision",
    "model",
    "version",
    "successes",
    "failures",
    "observations",
    "updated_at",
    "design",
    "response",
    "residual",
    "completions",
    "completion_tokens",
]


def router_state_row(r: RouterState) -> list[Any]:
    return [
        r.decision,
        r.model,
        r.version,
        r.successes,
        r.failures,
        r.observations,
        ts(r.updated_at),
        r.design,
        r.response,
        r.residual,
        r.completions,
        r.completion_tokens,
    ]


def router_state_from_row(row: dict[str, Any]) -> RouterState:
    """The router-state a snapshot row holds (for re-seeding ``wrp.router-state``)."""
    return RouterState(
        **{k: row[k] for k in ROUTER_STATE_COLUMNS if k != "updated_at"},
        updated_at=row["updated_at"].timestamp(),
    )


FEEDBACK_COLUMNS = [
    "request_id",
    "source",
    "tenant",
    "created_at",
    "score",
    "judgement",
    "comment",
    "implicit",
]


def feedback_row(f: Feedback) -> list[Any]:
    """``score`` is the reward in [0, 1]; ``judgement`` what the user actually gave; ``implicit``
    the label read from the user's next turn (implicit feedback only). One row per (request,
    source): a later judgement replaces an earlier one."""
    given = next(
        f"{kind}:{value}"
        for kind in ("score", "thumbs", "rating", "verdict")
        if (value := getattr(f, kind)) is not None
    )
    return [
        f.request_id,
        f.source,
        f.tenant or "",
        ts(f.created_at),
        f.reward,
        given,
        scrub_text(f.comment or ""),
        f.implicit or "",
    ]


DEAD_LETTER_COLUMNS = [
    "topic",
    "partition",
    "offset",
    "record_timestamp",
    "stage",
    "error_type",
    "error",
    "request_id",
    "raw",
    "failed_at",
]


def dead_letter_row(d: DeadLetter) -> list[Any]:
    """The letter with its raw bytes and error scrubbed again: anyone may write to ``wrp.dlq``."""
    try:
        raw = base64.b64encode(scrub_bytes(base64.b64decode(d.raw, validate=True))).decode()
    except (binascii.Error, ValueError):
        raw = scrub_text(d.raw)
    return [
        d.topic,
        d.partition,
        d.offset,
        d.record_timestamp or 0,
        d.stage,
        d.error_type,
        scrub_text(d.error),
        d.request_id or "",
        raw,
        ts(d.failed_at),
    ]


CACHE_ENTRY_COLUMNS = [
    "tenant",
    "decision",
    "params",
    "key",
    "embedding",
    "model",
    "response",
    "stored_at",
    "expires_at",
]


def cache_entry_rows(c: CacheEntry) -> list[list[Any]]:
    """The snapshot row of a cached answer; none when the answer holds PII (it stays cached on
    the live topic, but is never stored)."""
    if scrub_value(c.response) != c.response:
        return []
    return [
        [
            c.tenant,
            c.decision,
            c.params,
            c.key,
            c.embedding or "",
            c.model,
            json.dumps(c.response),
            ts(c.stored_at),
            ts(c.expires_at),
        ]
    ]


def cache_entry_from_row(row: dict[str, Any]) -> CacheEntry:
    """The cached answer a snapshot row holds (for re-seeding ``wrp.cache``)."""
    return CacheEntry(
        **{k: row[k] for k in ("tenant", "decision", "params", "key", "model")},
        embedding=row["embedding"] or None,
        response=json.loads(row["response"]),
        stored_at=row["stored_at"].timestamp(),
        expires_at=row["expires_at"].timestamp(),
    )
