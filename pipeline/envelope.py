"""Message contracts of every topic (pydantic v2).

A request travels as one :class:`Envelope` that each stage enriches with its own section:
``request`` -> ``signals`` -> ``safety`` -> ``decision`` -> ``result`` / ``outcome``.
Every message carries ``schema_version``; JSON Schemas in ``topics/schemas`` are generated
from these models (``wrp topics schemas``) and a test fails when they drift.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1


def now() -> float:
    """Wall-clock seconds since the epoch, the time base of every timestamp."""
    return time.time()


class Contract(BaseModel):
    """Base of every topic payload: versioned and strict about unknown fields."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION


# --- request ---------------------------------------------------------------------------------


#: A content part: a string ``type`` (text, image_url, ...) and, for text, a string ``text``;
#: the JSON schema says so, so generated clients and fuzzers agree with the validator.
ContentPart = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
            "additionalProperties": True,
        }
    ),
]


class ChatMessage(BaseModel):
    """One OpenAI chat message; content is text or a list of typed parts (text, image_url)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts_are_typed(cls, content: Any) -> Any:
        """Each part names its type as a string; a ``text``, when present, is a string."""
        for i, part in enumerate(content if isinstance(content, list) else []):
            if not isinstance(part.get("type"), str):
                raise ValueError(f"content part {i} needs a string 'type' (text, image_url, ...)")
            if not isinstance(part.get("text", ""), str):
                raise ValueError(f"content part {i} has a 'text' that is not a string")
        return content

    def text(self) -> str:
        """The message's text, with non-text parts left out."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(p.get("text", "") for p in self.content if p["type"] == "text")


class ChatRequest(BaseModel):
    """OpenAI chat-completions body. ``model`` is ``auto`` to let the router choose."""

    model_config = ConfigDict(extra="allow")
    model: str = "auto"
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False


#: Identifiers a client chooses (request and session ids): printable ASCII without spaces.
IDENTIFIER = r"^[!-~]{1,128}$"
#: Tenant names: they become ClickHouse keys, metric labels and API-key owners.
TENANT = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
#: API key ids: the first 12 hex digits of the key's sha256 (budgets per key count by it).
API_KEY_ID = r"^[0-9a-f]{12}$"
#: Kafka's legal topic names.
TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class RequestSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=IDENTIFIER)
    tenant: str = Field("default", pattern=TENANT)
    session_id: str | None = Field(None, pattern=IDENTIFIER)
    api_key: str | None = Field(
        None,
        pattern=API_KEY_ID,
        description="the gateway's id of the caller's API key (a digest prefix, never the key)",
    )
    reply_to: str = Field(
        "wrp.responses",
        pattern=TOPIC,
        description="where the answer goes: a reply topic of the catalog, or an existing topic "
        "with the deployment's reply prefix (WRP_REPLY_TOPIC_PREFIX)",
    )
    hops: int = Field(
        0, ge=0, description="stages this request has passed; a stage refuses it past WRP_MAX_HOPS"
    )
    deadline: float | None = Field(None, description="epoch seconds after which to give up")
    ttft_budget_ms: float | None = Field(
        None, gt=0, description="pool-aware routing skips pools slower than this to first token"
    )
    priority: int = 0
    created_at: float = Field(default_factory=now)
    body: ChatRequest | None = Field(
        None, description="absent only on error replies to requests whose body was unreadable"
    )

    @property
    def session_scope(self) -> tuple[str, str] | None:
        """The session's identity for per-session state: an id is unique only in its tenant."""
        return (self.tenant, self.session_id) if self.session_id else None

    @property
    def key(self) -> str:
        """Partition key: the session keeps its requests on one partition, in order."""
        return self.session_id or self.request_id


# --- sections added by the stages ------------------------------------------------------------


class StructuralSignals(BaseModel):
    """The signals read from the request's shape, no model involved
    (:func:`pipeline.workload.structural.extract_structural`)."""

    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int
    context_class: str
    messages: int
    turns: int
    tools_present: bool
    tool_loop: bool
    images_present: bool
    audio_present: bool
    system_fingerprint: str | None


class Signals(StructuralSignals):
    """Workload signals (W), documented one by one in README ("Signals"): the structural ones
    and those the models and rules add.

    ``embedding`` is the routing text's float16 little-endian, base64, L2-normalised vector:
    computed once here and reused downstream, never recomputed. ``heads`` names the version of
    every model that produced a signal.
    """

    tools_offered: int = Field(0, ge=0, description="tools the request came with")
    tools_kept: int = Field(
        0, ge=0, description="tools passed on after tool selection (all when it is off)"
    )
    tool_tokens: int = Field(
        0, ge=0, description="tokens of the tools offered (0 when tool selection left them alone)"
    )
    tool_tokens_saved: int = Field(
        0, ge=0, description="tokens of the tools tool selection dropped"
    )
    language: str
    language_score: float
    expected_output_tokens: int
    load_shape: str
    session: Literal["warm", "cold"]
    keywords: list[str] = Field([], description="names of the keyword rules that fired")
    embedding_rules: dict[str, float] = Field(
        {}, description="best cosine per embedding rule, for every rule that fired"
    )
    domain: str
    domain_score: float
    complexity: str
    complexity_score: float
    embedding: str
    encoder: str
    heads: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _without_prefix_hashes(cls, data: Any) -> Any:
        """Envelopes from stages that still sent the dropped ``prefix_hashes`` (in flight across
        an upgrade) are read without it rather than dead-lettered."""
        if isinstance(data, dict) and "prefix_hashes" in data:
            return {k: v for k, v in data.items() if k != "prefix_hashes"}
        return data

    def embedding_vector(self) -> np.ndarray:
        return self.decode_embedding(self.embedding)

    @staticmethod
    def decode_embedding(encoded: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(encoded), dtype="<f2").astype(np.float32)

    @staticmethod
    def encode_embedding(vector: np.ndarray) -> str:
        return base64.b64encode(vector.astype("<f2").tobytes()).decode("ascii")


class PiiFinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity: str
    message_index: int
    start: int
    end: int


SafetyAction = Literal["allow", "flag", "redact", "route_safe", "block"]


class SafetyHit(BaseModel):
    """Where a learned detector scored highest in a request (the evidence for its score)."""

    model_config = ConfigDict(extra="forbid")
    detector: str = Field(description="jailbreak, injection or harmful")
    score: float
    threshold: float
    fired: bool
    watch: float | None = Field(
        None, description="the detector's watch level: a suspicious score below the threshold"
    )
    message_index: int
    role: str
    window: int = Field(description="the window's place among the message's windows read")


class SafetyScan(BaseModel):
    """How much of the request the learned detectors read."""

    model_config = ConfigDict(extra="forbid")
    messages: int = 0
    windows: int = 0
    skipped_windows: int = Field(0, description="windows the per-request budget left out")
    cached_windows: int = Field(0, description="windows whose scores were remembered")


class Safety(BaseModel):
    """The safety verdict: the most severe action any detector called for, and the evidence."""

    model_config = ConfigDict(extra="forbid")
    action: SafetyAction
    redacted: bool = False
    jailbreak_score: float
    injection_score: float = 0.0
    harmful_score: float = 0.0
    hits: list[SafetyHit] = Field([], description="per learned detector, where it scored highest")
    scan: SafetyScan = SafetyScan()
    contrastive_score: float | None = None
    session_risk: float = Field(
        0.0, description="distinct suspicious turns of the session over the number that acts"
    )
    moderation: dict[str, float] = Field({}, description="probability per moderation category")
    categories: list[str] = Field([], description="moderation categories over threshold")
    pii: list[PiiFinding] = []
    reasons: list[str] = []
    triggers: list[str] = Field(
        [],
        description="what fired: jailbreak, injection, harmful, moderation:<category>, "
        "pii:<ENTITY>",
    )
    models: dict[str, str] = Field({}, description="detector -> model version")


class CacheScope(BaseModel):
    """Where answers are shared in the semantic cache: a tenant's decision, for one shape of
    request (``params`` fingerprints everything in the body that shapes the answer besides the
    last user turn); scopes never see each other's entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant: str
    decision: str
    params: str


class Decision(BaseModel):
    """Router output: which decision matched, which model and pool were chosen, and why."""

    model_config = ConfigDict(extra="forbid")
    decision: str
    candidates: list[str]
    model: str
    pool: str
    strategy: str
    scores: dict[str, float] = Field({}, description="each candidate's score under the strategy")
    explored: bool = Field(False, description="the model is not the one with the best estimate")
    skipped: dict[str, str] = Field({}, description="candidates pool-aware routing left out, why")
    redact: list[str] = Field([], description="PII entities the decision's safety redacts")
    ladder: list[str] = Field([], description="cascade: models to escalate to, in order")
    fallback: str | None = Field(None, description="model to try when the chosen one's pool fails")
    reasoning: bool = Field(False, description="the decision turns on the model's reasoning mode")
    context: list[float] = Field([], description="contextual-bandit features, for the learner")
    prior: float = Field(0.5, description="the chosen model's quality prior for this request")
    policy_version: str = Field("", description="digest of the policy file that decided")
    state_version: int = Field(0, description="sum of the candidates' router-state versions")
    sticky: bool = Field(
        False, description="the session was kept on its previous model over the strategy's choice"
    )
    switched_from: str | None = Field(
        None, description="the session's previous model, when this turn moved it to another"
    )
    cache_hit: bool = False
    budget: str | None = Field(None, description="the budget over its limit that acted, if any")
    budget_action: Literal["reject", "downgrade", "flag"] | None = None
    cache_ttl_s: float | None = Field(
        None, description="dispatch stores the answer in the semantic cache for this long"
    )
    cache_scope: CacheScope | None = Field(
        None, description="the cache scope the router looked the answer up in, to store it under"
    )
    cache_key: str | None = Field(
        None, description="the answer's exact key in that scope: sha256 of the routing text"
    )


class ErrorInfo(BaseModel):
    """OpenAI-shaped error: ``type`` is machine-readable, ``message`` tells the fix."""

    model_config = ConfigDict(extra="forbid")
    type: str
    message: str
    stage: str
    retry_after_s: float | None = Field(
        None, ge=0, description="when retrying may succeed (a budget's window ends)"
    )


ResultStatus = Literal["ok", "blocked", "error"]
AnswerVerdict = Literal["allow", "flag", "redact", "block"]


class AnswerScreen(BaseModel):
    """What screening the answer found and did before the client saw it (no text: entity
    names, categories and counts only)."""

    model_config = ConfigDict(extra="forbid")
    action: AnswerVerdict = Field(description="the most severe action taken")
    triggers: list[str] = Field(
        [], description="what fired: pii:<ENTITY>, moderation:<category>, attack_complied"
    )
    reasons: list[str] = []
    pii: list[str] = Field(
        [], description="PII entities found in the answer that the policy does not allow"
    )
    redacted: int = Field(0, description="PII values replaced by <ENTITY>")
    categories: list[str] = Field([], description="moderation categories over threshold")
    attack_complied: bool = Field(
        False, description="the request scored as an attack and the answer is not a refusal"
    )
    streamed: bool = False
    windows: int = Field(0, description="screening passes (1 for an answer screened whole)")
    held_chars: int = Field(0, description="most characters held back at once (streamed)")


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: ResultStatus
    response: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    stage: str
    screen: AnswerScreen | None = Field(None, description="the answer's screening, when screened")
    completed_at: float = Field(default_factory=now)


class Attempt(BaseModel):
    """One call to one endpoint while serving a request."""

    model_config = ConfigDict(extra="forbid")
    model: str
    pool: str
    endpoint: str
    status: Literal["ok", "error"]
    error_type: str | None = None
    started_at: float
    latency_ms: float
    ttft_ms: float | None = None


class Outcome(Contract):
    """What serving a request cost and how it went; also published alone on ``wrp.outcomes``."""

    request_id: str
    tenant: str = Field("default", pattern=TENANT, description="the request's tenant")
    session_id: str | None = Field(None, description="the request's session, for budgets")
    api_key: str | None = Field(None, description="the request's API key id, for budgets")
    decision: str
    model: str
    pool: str
    endpoint: str
    status: Literal["ok", "error"]
    error_type: str | None = None
    attempts: int
    latency_ms: float
    ttft_ms: float | None = Field(None, description="time to the first generated token")
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = Field(description="the model card's token prices for this request")
    gpu_cost_usd: float = Field(0.0, description="its share of the pool's GPU-hours")
    energy_j: float = Field(0.0, description="its share of the GPUs' energy (power by batch)")
    dispatched_at: float
    completed_at: float
    explored: bool = False
    cache_hit: bool = False
    escalated_from: list[str] = Field(
        [], description="cascade: models whose answers failed a check, in the order tried"
    )
    slo_missed: bool = False
    fallback_from: str | None = Field(None, description="the model that failed before this one")
    attempt_log: list[Attempt] = Field([], description="every endpoint call, in order")
    baseline_model: str | None = Field(
        None, description="the decision's strongest candidate (highest quality prior)"
    )
    baseline_cost_usd: float = Field(
        0.0, description="what the strongest candidate would have charged for the same tokens"
    )
    prior: float = Field(0.5, description="the served model's quality prior (the decision's)")
    context: list[float] = Field([], description="the decision's contextual-bandit features")


class StageSpan(BaseModel):
    """When a stage started and finished working on this envelope (epoch seconds)."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    start: float
    end: float


class Envelope(Contract):
    """The request and its whole trail; the final envelope lands on ``reply_to``."""

    request: RequestSection
    signals: Signals | None = None
    safety: Safety | None = None
    decision: Decision | None = None
    result: Result | None = None
    outcome: Outcome | None = None
    trail: list[StageSpan] = []

    @property
    def key(self) -> str:
        return self.request.key

    def advance(self, stage: str, started: float, **sections: Any) -> Envelope:
        """A copy with ``sections`` set and this stage's span appended to the trail."""
        span = StageSpan(stage=stage, start=started, end=now())
        request = sections.pop("request", self.request)
        request = request.model_copy(update={"hops": request.hops + 1})
        return self.model_copy(
            update={**sections, "request": request, "trail": [*self.trail, span]}
        )

    def missing(self, *sections: str) -> list[str]:
        """Names of the required sections that are not present."""
        return [name for name in sections if getattr(self, name) is None]


# --- other topics ----------------------------------------------------------------------------


Verdict = Literal["good_fit", "underpowered", "overprovisioned", "failed"]
#: Reward of each verdict: an overprovisioned answer was good but a cheaper model would have done.
VERDICT_REWARD: dict[str, float] = {
    "good_fit": 1.0,
    "overprovisioned": 0.5,
    "underpowered": 0.0,
    "failed": 0.0,
}


#: What a user's next turn in the session says about the previous answer (see
#: ``pipeline.learn.implicit``).
ImplicitLabel = Literal["moved_on", "says_wrong", "clarify", "re_ask"]


class Feedback(Contract):
    """A user's or evaluator's judgement of a served request, in exactly one form: ``score`` in
    [0, 1], ``thumbs`` up/down, a 1-5 ``rating`` or a ``verdict``. :attr:`reward` maps it to
    [0, 1] (1 = good). Implicit feedback (read from the user's next turn by the signals stage)
    carries its ``implicit`` label and its reward as ``score``."""

    request_id: str = Field(pattern=IDENTIFIER)
    score: float | None = Field(None, ge=0, le=1)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(None, ge=1, le=5)
    verdict: Verdict | None = None
    source: str = Field("user", min_length=1, max_length=128)
    tenant: str | None = Field(
        None,
        pattern=TENANT,
        description="who judged: the gateway sets the API key's tenant, and the learner credits "
        "only judgements of the request's own tenant; None: a trusted producer on the topic",
    )
    comment: str | None = Field(None, max_length=4000)
    implicit: ImplicitLabel | None = Field(
        None,
        description="set on implicit feedback only: what the user's next turn said about the "
        "answer; the learner weighs it by router.learning.implicit.weight",
    )
    created_at: float = Field(default_factory=now)

    @model_validator(mode="after")
    def _one_judgement(self) -> Feedback:
        given = [
            k for k in ("score", "thumbs", "rating", "verdict") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of score, thumbs, rating, verdict (got {given or 'none'})"
            )
        return self

    @property
    def reward(self) -> float:
        if self.score is not None:
            return self.score
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else 0.0
        if self.rating is not None:
            return (self.rating - 1) / 4
        assert self.verdict is not None
        return VERDICT_REWARD[self.verdict]


class RouterState(Contract):
    """Evidence about one (decision, model) arm; compacted topic, key ``decision/model``.

    Feedback with score s adds s to ``successes`` and 1 - s to ``failures``; a failed outcome
    adds 1 to ``failures``. Routers add the policy's Beta prior to these counts.
    """

    decision: str
    model: str
    successes: float = Field(ge=0)
    failures: float = Field(ge=0)
    observations: int = Field(ge=0, description="feedback and failures folded in")
    version: int = Field(0, ge=0, description="increases by one with every credit folded in")
    design: list[float] = Field(
        [], description="contextual bandit: decayed sum of x x^T, row-major (d*d)"
    )
    response: list[float] = Field(
        [], description="contextual bandit: decayed sum of (reward - prior) * x (d)"
    )
    residual: float = Field(
        0.0, description="decayed sum of (reward - the decision's prior) over the evidence"
    )
    completions: float = Field(0.0, ge=0, description="decayed count of served answers")
    completion_tokens: float = Field(
        0.0, ge=0, description="decayed sum of their completion tokens (mean: / completions)"
    )
    updated_at: float = Field(default_factory=now)

    def answer_tokens(self) -> float | None:
        """The arm's learnt answer length, once it has served an answer."""
        return self.completion_tokens / self.completions if self.completions >= 1 else None

    @property
    def key(self) -> str:
        return router_state_key(self.decision, self.model)


def router_state_key(decision: str, model: str) -> str:
    return f"{decision}/{model}"


class Credit(Contract):
    """Evidence for one arm, re-keyed by ``decision/model`` inside the learner."""

    request_id: str
    decision: str
    model: str
    successes: float = Field(ge=0)
    failures: float = Field(ge=0)
    prior: float = Field(0.5, ge=0, le=1, description="the card's quality prior for the request")
    context: list[float] = Field([], description="the decision's contextual-bandit features")
    at: float = Field(default_factory=now, description="when the evidence was observed")
    completions: float = Field(0.0, ge=0, description="served answers whose length this carries")
    completion_tokens: float = Field(0.0, ge=0, description="their completion tokens")


class PoolState(Contract):
    """One dispatch instance's view of one pool endpoint, published by dispatch every second.

    Compacted topic, key ``pool/endpoint/instance``: each dispatch instance caps and counts its
    own in-flight requests, so a pool's load is the sum over instances' fresh rows.
    """

    pool: str
    endpoint: str
    instance: str = Field("", description="the dispatch instance that observed it")
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    error_rate: float = Field(0.0, ge=0, le=1, description="EWMA of failed calls")
    latency_ms_ewma: float = Field(ge=0)
    in_flight: int = Field(0, ge=0)
    capacity: int | None = Field(None, ge=1, description="in-flight cap of the endpoint")
    queue_estimate: float = Field(0.0, ge=0, description="waiting + running, scraped or counted")
    ttft_ms_ewma: float | None = Field(None, ge=0)
    kv_usage: float | None = Field(None, ge=0, le=1, description="scraped KV cache usage")
    circuit: Literal["closed", "open", "half_open"] = "closed"
    updated_at: float = Field(default_factory=now)

    @property
    def key(self) -> str:
        return f"{self.pool}/{self.endpoint}/{self.instance}"


class CacheEntry(Contract):
    """A cached answer on the compacted ``wrp.cache`` (see ``pipeline.router.cache_entries``)."""

    tenant: str
    decision: str
    params: str = Field(description="fingerprint of the answer-shaping request fields")
    key: str = Field(description="sha256 of the normalised last user turn")
    embedding: str | None = Field(None, description="that turn's embedding, float16 base64")
    model: str
    response: dict[str, Any]
    stored_at: float
    expires_at: float


class Usage(Contract):
    """What one tenant, API key or session was served in the current window, as counted from
    one partition of ``wrp.outcomes`` (key ``scope/who/window/partition``, compacted): a scope's
    usage is the sum over partitions. ``offset`` is the last outcome folded in: one redelivered
    after a crash is at or below it and is not counted again. Partition -1 holds usage re-seeded
    from the analytics store after the embedded broker lost its topics."""

    scope: Literal["tenant", "api_key", "session"]
    who: str
    window: Literal["minute", "day", "month"]
    start: float = Field(description="the window's start, epoch seconds (UTC calendar)")
    partition: int = Field(ge=-1)
    offset: int = Field(-1, ge=-1)
    requests: int = Field(0, ge=0)
    tokens: int = Field(0, ge=0)
    usd: float = Field(0.0, ge=0)
    recent: list[str] = Field(
        [], description="the last requests folded in (routers settle their reservations by it)"
    )
    updated_at: float = Field(default_factory=now)

    @property
    def key(self) -> str:
        return usage_key(self.scope, self.who, self.window, self.partition)


def usage_key(scope: str, who: str, window: str, partition: int) -> str:
    return f"{scope}/{who}/{window}/{partition}"


class DeadLetter(Contract):
    """A message a stage could not process, with where it came from and why."""

    stage: str
    topic: str
    partition: int
    offset: int
    error_type: str
    error: str
    record_timestamp: int | None = Field(
        None,
        description="the source record's Kafka timestamp (ms): with topic, partition and offset "
        "it names the record across broker restarts, which restart offsets",
    )
    request_id: str | None = None
    raw: str = Field(description="the original bytes, base64, PII replaced by <ENTITY>")
    failed_at: float = Field(default_factory=now)


class StreamChunks(Contract):
    """Part of an answer as the pool generates it, for a request that streams; on
    ``wrp.stream``, key ``request_id``. ``seq`` counts from 0; the last record of a stream has
    ``done`` (and ``error`` when the call failed after the stream began). The whole answer still
    arrives on ``reply_to`` as usual."""

    request_id: str
    seq: int = Field(ge=0)
    chunks: list[dict[str, Any]] = Field([], description="chat.completion.chunk events, in order")
    done: bool = False
    error: ErrorInfo | None = None
    decision: str = ""
    model: str = ""
    pool: str = ""


class StageHealth(Contract):
    """A stage process saying it is alive, every ``interval_s``, on ``wrp.stage-health`` (key
    ``process/instance``); the gateway is ready while every stage of the request path has a fresh
    one. A process stopping cleanly says so at once."""

    process: str = Field(description="the stage run, e.g. signals or signals+safety+router")
    stages: list[str] = Field(description="the stages it runs")
    instance: str
    state: Literal["running", "paused", "stopping"]
    interval_s: float = Field(gt=0)
    at: float = Field(default_factory=now)

    @property
    def key(self) -> str:
        return f"{self.process}/{self.instance}"


#: Payload model of each catalog ``payload`` name.
PAYLOADS: dict[str, type[Contract]] = {
    "Envelope": Envelope,
    "Outcome": Outcome,
    "Feedback": Feedback,
    "RouterState": RouterState,
    "Credit": Credit,
    "PoolState": PoolState,
    "CacheEntry": CacheEntry,
    "DeadLetter": DeadLetter,
    "StageHealth": StageHealth,
    "StreamChunks": StreamChunks,
    "Usage": Usage,
}
