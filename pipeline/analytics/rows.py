"""Messages -> ClickHouse rows, columns by name (tables: :mod:`pipeline.analytics.migrations`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pipeline.envelope import DeadLetter, Envelope, Feedback, Outcome


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


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
    "images_present",
    "context_class",
    "domain",
    "complexity",
    "language",
    "safety_action",
    "jailbreak_score",
    "harmful_score",
    "moderation_categories",
    "pii_entities",
    "decision",
    "strategy",
    "candidates",
    "explored",
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
    "trail",
    "envelope",
]


def request_row(env: Envelope) -> list[Any]:
    """One row holding the whole trail of a finished request."""
    req, sig, saf, dec, res, out = (
        env.request,
        env.signals,
        env.safety,
        env.decision,
        env.result,
        env.outcome,
    )
    completed = res.completed_at if res else req.created_at
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
        sig.images_present if sig else False,
        sig.context_class if sig else "",
        sig.domain if sig else "",
        sig.complexity if sig else "",
        sig.language if sig else "",
        saf.action if saf else "",
        saf.jailbreak_score if saf else 0.0,
        saf.harmful_score if saf else 0.0,
        saf.categories if saf else [],
        sorted({f.entity for f in saf.pii}) if saf else [],
        dec.decision if dec else "",
        dec.strategy if dec else "",
        dec.candidates if dec else [],
        dec.explored if dec else False,
        dec.cache_hit if dec else False,
        dec.policy_version if dec else "",
        dec.model if dec else "",
        dec.pool if dec else "",
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
        json.dumps([s.model_dump() for s in env.trail]),
        env.model_copy(update={"trail": []}).model_dump_json(exclude={"signals": {"embedding"}}),
    ]


OUTCOME_COLUMNS = [
    "request_id",
    "decision",
    "model",
    "pool",
    "endpoint",
    "status",
    "error_type",
    "attempts",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "ttft_ms",
    "gpu_cost_usd",
    "energy_j",
    "fallback_from",
    "dispatched_at",
    "completed_at",
]


def outcome_row(o: Outcome) -> list[Any]:
    return [
        o.request_id,
        o.decision,
        o.model,
        o.pool,
        o.endpoint,
        o.status,
        o.error_type or "",
        o.attempts,
        o.latency_ms,
        o.prompt_tokens,
        o.completion_tokens,
        o.cost_usd,
        o.ttft_ms or 0.0,
        o.gpu_cost_usd,
        o.energy_j,
        o.fallback_from or "",
        ts(o.dispatched_at),
        ts(o.completed_at),
    ]


FEEDBACK_COLUMNS = ["request_id", "source", "created_at", "score", "judgement", "comment"]


def feedback_row(f: Feedback) -> list[Any]:
    """``score`` is the reward in [0, 1]; ``judgement`` what the user actually gave."""
    given = next(
        f"{kind}:{value}"
        for kind in ("score", "thumbs", "rating", "verdict")
        if (value := getattr(f, kind)) is not None
    )
    return [f.request_id, f.source, ts(f.created_at), f.reward, given, f.comment or ""]


DEAD_LETTER_COLUMNS = [
    "topic",
    "partition",
    "offset",
    "stage",
    "error_type",
    "error",
    "request_id",
    "raw",
    "failed_at",
]


def dead_letter_row(d: DeadLetter) -> list[Any]:
    return [
        d.topic,
        d.partition,
        d.offset,
        d.stage,
        d.error_type,
        d.error,
        d.request_id or "",
        d.raw,
        ts(d.failed_at),
    ]
