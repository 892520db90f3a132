"""The policy file: models, pools, signals, safety and routing decisions (YAML, validated).

Load it with :func:`load_policy`; any problem raises :class:`PolicyError` whose lines name the
file, the path inside it, what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.envelope import TENANT, ImplicitLabel, SafetyAction
from pipeline.vocabulary import (
    COMPLEXITY,
    DOMAINS,
    KNOWN_ENTITIES,
    LOAD_SHAPES,
    MODERATION_CATEGORIES,
)

#: Signals a decision rule may test, with the Python type of their values. Besides these,
#: ``keyword.<name>`` and ``embedding.<name>`` (bool) test the policy's own keyword and
#: embedding-similarity rules.
RULE_SIGNALS: dict[str, type] = {
    "domain": str,
    "domain_score": float,
    "complexity": str,
    "language": str,
    "context_class": str,
    "prompt_tokens": int,
    "expected_output_tokens": int,
    "load_shape": str,
    "messages": int,
    "turns": int,
    "tools_present": bool,
    "tool_loop": bool,
    "images_present": bool,
    "audio_present": bool,
    "session": str,
    "jailbreak_score": float,
    "injection_score": float,
    "harmful_score": float,
    "session_risk": float,
    "pii_found": bool,
    "moderation_flagged": bool,
    "safety_action": str,
    "tenant": str,
}
RULE_FAMILIES = ("keyword", "embedding")


def known_signal(name: str) -> bool:
    family, _, rest = name.partition(".")
    return name in RULE_SIGNALS or (family in RULE_FAMILIES and bool(rest))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens")

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


def _quality_keys(value: dict[str, float]) -> dict[str, float]:
    known = (*DOMAINS, "default")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; use 'default' or one of {list(known)}")
    return value


class ModelCard(Strict):
    name: str = Field(min_length=1)
    pool: str
    context_length: int = Field(gt=0)
    price: Price
    description: str = ""
    quality: Annotated[
        dict[str, Annotated[float, Field(ge=0, le=1)]], AfterValidator(_quality_keys)
    ] = Field(
        {},
        description="prior probability of a good answer per domain; 'default' for the rest",
    )
    reasoning: bool = Field(False, description="the model has a reasoning (thinking) mode")

    def prior_quality(self, domain: str | None) -> float:
        """The card's quality prior for ``domain`` (0.5 when the card says nothing)."""
        return self.quality.get(domain or "default", self.quality.get("default", 0.5))


GpuName = Literal["A10G", "A100", "H100"]
ServedModel = Literal["llama-3.1-8b", "llama-3.1-70b"]
#: Policies that choose among endpoints directly; the composite ones wrap one of these.
BasePolicy = Literal[
    "round_robin", "least_outstanding", "power_of_two", "prefix_affinity", "kv_aware"
]
SelectionPolicy = BasePolicy | Literal["context_length", "disaggregated"]


#: An environment variable's name: what ``auth`` names instead of holding a secret.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SimulatorConfig(Strict):
    """How `wrp up` / `wrp sim` simulate this pool's endpoints (see ``pipeline.pool.engine``)."""

    model: ServedModel = Field("llama-3.1-8b", description="the served model's size and KV shape")
    speed: float = Field(1.0, gt=0, description="simulated seconds per wall second (10 = 10x)")
    max_num_seqs: int = Field(256, ge=1, description="vLLM's cap on sequences per batch")
    kv_blocks: int | None = Field(None, ge=1, description="override the KV cache size (blocks)")
    api_key_env: str | None = Field(
        None,
        pattern=ENV_NAME,
        description="the simulator answers 401 unless called with the key this env var holds",
    )


class SelectionConfig(Strict):
    """The endpoint selection policy of a pool (``pipeline.pool.selection``)."""

    policy: SelectionPolicy = "least_outstanding"
    within: BasePolicy = Field(
        "least_outstanding", description="inside a tier (context_length) or on the decode side"
    )
    prefill_within: BasePolicy = Field("prefix_affinity", description="disaggregated prefill side")
    load_factor: float = Field(1.25, ge=1, description="prefix affinity's bounded-load factor c")
    affinity_tokens: int = Field(1024, ge=16, description="prefix length prefix affinity hashes")
    boundary_tokens: int | None = Field(
        None, gt=0, description="context_length: prompt + output up to this go to the short tier"
    )
    scrape_interval_s: float = Field(1.0, gt=0, description="how often /metrics is scraped")

    @property
    def uses_metrics(self) -> bool:
        """Whether a policy in it scores endpoints by their scraped ``/metrics``."""
        return "kv_aware" in (self.policy, self.within, self.prefill_within)

    @model_validator(mode="after")
    def _boundary(self) -> SelectionConfig:
        if self.policy == "context_length" and self.boundary_tokens is None:
            raise ValueError("policy context_length needs boundary_tokens (e.g. 8192)")
        return self


class CircuitConfig(Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    open_s: float = Field(10.0, gt=0, description="how long it stays open before one probe")


#: Headers the pool client sets itself; ``auth.headers_env`` may not override them.
RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "accept"}
)


def _header_names(value: dict[str, str]) -> dict[str, str]:
    for header, env in value.items():
        if not re.fullmatch(r"[A-Za-z0-9-]+", header):
            raise ValueError(f"header name {header!r}: use letters, digits and '-'")
        if header.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {header!r} is set by WRP itself; remove it")
        if not re.fullmatch(ENV_NAME, env):
            raise ValueError(
                f"header {header!r}: its value is not an environment variable name; name the "
                "variable that holds the value, never the value itself (not quoted here: it "
                "may be a secret)"
            )
    return value


class PoolAuth(Strict):
    """The credentials a pool or endpoint is called with: names where the secrets are, never
    the secrets (read from the environment or a mounted file when dispatch starts and on every
    policy reload)."""

    api_key_env: str | None = Field(
        None, pattern=ENV_NAME, description="env var holding the key sent as a bearer token"
    )
    api_key_file: str | None = Field(
        None, min_length=1, description="file holding the bearer key (e.g. a mounted secret)"
    )
    headers_env: Annotated[dict[str, str], AfterValidator(_header_names)] = Field(
        {}, description="extra headers: header name -> env var holding its value"
    )

    @model_validator(mode="after")
    def _one_key(self) -> PoolAuth:
        if self.api_key_env and self.api_key_file:
            raise ValueError("give api_key_env or api_key_file, not both")
        has_key = self.api_key_env or self.api_key_file
        if has_key and any(h.lower() == "authorization" for h in self.headers_env):
            raise ValueError("the api key is the Authorization header; drop it from headers_env")
        return self


class Endpoint(Strict):
    url: str = Field(
        pattern=r"^https?://[^/]+",
        description="base URL; /v1/... is appended (a trailing /v1, as hosted APIs give, too)",
    )
    tier: Literal["short", "long"] | None = Field(None, description="context_length tier")
    role: Literal["prefill", "decode", "both"] = Field("both", description="disaggregated role")
    auth: PoolAuth | None = Field(None, description="credentials; replaces the pool's auth")

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        if "@" in url.split("//", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "a URL with user:password@ puts a secret in the policy; name it under auth: instead"
            )
        return url.rstrip("/").removesuffix("/v1")


class Pool(Strict):
    name: str = Field(min_length=1)
    endpoints: list[Endpoint] = Field(min_length=1)
    timeout_s: float = Field(30.0, gt=0, description="whole-call budget of one attempt")
    retries: int = Field(1, ge=0, le=5, description="extra attempts after a retryable failure")
    backoff_ms: float = Field(50.0, ge=0, description="first retry's backoff; doubles, jittered")
    max_in_flight: int = Field(64, ge=1, description="per endpoint; beyond it dispatch pauses")
    selection: SelectionConfig = SelectionConfig()
    circuit: CircuitConfig = CircuitConfig()
    gpu: GpuName = Field("A100", description="hardware profile: GPU cost and power on outcomes")
    gpus_per_endpoint: int = Field(1, ge=1, description="tensor-parallel GPUs behind one endpoint")
    simulator: SimulatorConfig | None = Field(
        None, description="when set, `wrp up` serves every endpoint of this pool with `wrp sim`"
    )
    auth: PoolAuth | None = Field(None, description="credentials for every endpoint")

    def endpoint_auth(self, endpoint: Endpoint) -> PoolAuth | None:
        """The credentials ``endpoint`` is called with: its own, else the pool's."""
        return endpoint.auth if endpoint.auth is not None else self.auth

    @model_validator(mode="after")
    def _layout(self) -> Pool:
        policy = self.selection.policy
        if policy == "context_length" and {e.tier for e in self.endpoints} != {"short", "long"}:
            raise ValueError("context_length needs endpoints with tier: short and tier: long")
        roles = {e.role for e in self.endpoints}
        if policy == "disaggregated" and not {"prefill", "decode"} <= roles:
            raise ValueError("disaggregated needs endpoints with role: prefill and decode")
        return self


class ContextClass(Strict):
    name: str
    max_tokens: int = Field(gt=0)


#: ``.*`` / ``.+`` not preceded by a backslash: a wildcard run without a bound.
UNBOUNDED_WILDCARD = re.compile(r"(?<!\\)\.[*+]")


class KeywordRule(Strict):
    """Fires when the routing text contains any of ``any`` (if given), every one of ``all``
    and none of ``none``. Terms are whole words unless ``regex`` is true."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    any: list[str] = []
    all: list[str] = []
    none: list[str] = []
    regex: bool = False
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _valid(self) -> KeywordRule:
        if not self.any and not self.all:
            raise ValueError(f"keyword rule {self.name!r} needs terms under any: or all:")
        if self.regex:
            for term in [*self.any, *self.all, *self.none]:
                try:
                    re.compile(term)
                except re.error as exc:
                    raise ValueError(
                        f"keyword rule {self.name!r}: invalid regex {term!r} ({exc})"
                    ) from None
                if UNBOUNDED_WILDCARD.search(term):
                    raise ValueError(
                        f"keyword rule {self.name!r}: {term!r} has an unbounded .* or .+, which "
                        "can take quadratic time on long prompts; bound it, e.g. [^\\n]{0,200}?"
                    )
        return self


class EmbeddingRule(Strict):
    """Fires when the request embedding's cosine to any candidate is >= ``threshold``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    candidates: list[str] = Field(min_length=1)
    threshold: float = Field(0.6, ge=-1, le=1)


class LoadShapeConfig(Strict):
    """prefill_heavy when prompt/expected-output tokens >= ``prefill_ratio``, decode_heavy when
    <= ``decode_ratio``. Expected output: min(max_tokens, the domain's prior)."""

    prefill_ratio: float = Field(4.0, gt=0)
    decode_ratio: float = Field(0.5, gt=0)
    default_output_tokens: int = Field(
        256, gt=0, description="prior when the domain head carries none"
    )


class SignalsConfig(Strict):
    context_classes: list[ContextClass] = Field(min_length=1)
    domain_threshold: float = Field(
        0.3, ge=0, le=1, description="below this head confidence the domain is 'other'"
    )
    language_min_confidence: float = Field(0.5, ge=0, le=1)
    session_ttl_s: float = Field(900, gt=0, description="a session seen within this is warm")
    load_shape: LoadShapeConfig = LoadShapeConfig()
    keywords: list[KeywordRule] = []
    embeddings: list[EmbeddingRule] = []

    @model_validator(mode="after")
    def _ordered(self) -> SignalsConfig:
        bounds = [c.max_tokens for c in self.context_classes]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(
                "context_classes must be listed in strictly increasing max_tokens order"
            )
        if self.load_shape.decode_ratio >= self.load_shape.prefill_ratio:
            raise ValueError("load_shape.decode_ratio must be below load_shape.prefill_ratio")
        for family, rules in (("keywords", self.keywords), ("embeddings", self.embeddings)):
            names = [r.name for r in rules]
            if len(set(names)) != len(names):
                raise ValueError(f"{family}: rule names must be unique")
        return self


class TenantToolSelection(Strict):
    """A tenant's overrides of the tool selection (unset fields follow the policy's)."""

    enabled: bool | None = None
    top_k: int | None = Field(None, ge=1)
    threshold: float | None = Field(None, ge=-1, le=2)
    min_tools: int | None = Field(None, ge=1)


class ToolSelectionConfig(Strict):
    """Keep only the tools relevant to a request (pipeline/workload/tool_selection.py). The
    defaults were chosen on the tune half of BFCL live rows (`wrp eval tools --tune`)."""

    enabled: bool = Field(False, description="narrow the request's tools before it is served")
    top_k: int = Field(10, ge=1, description="keep at most this many of the best-scoring tools")
    threshold: float | None = Field(
        0.15,
        ge=-1,
        le=2,
        description="keep only tools scoring at least this (cosine + name bonus), so a request "
        "no tool fits keeps none; null: top_k alone. Tools the conversation called, or "
        "tool_choice names, are always kept",
    )
    min_tools: int = Field(16, ge=1, description="requests with fewer tools are left alone")
    name_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="score bonus per share of the tool name's words the user turns use",
    )
    cache_size: int = Field(
        4096, ge=1, description="tool embeddings and token counts kept in each process"
    )
    tenants: dict[str, TenantToolSelection] = {}

    def for_tenant(self, tenant: str) -> ToolSelectionConfig:
        """This config with the tenant's overrides applied."""
        override = self.tenants.get(tenant)
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ContrastiveConfig(Strict):
    """Fires when max cosine to ``attack`` minus max cosine to ``benign`` is >= ``margin``."""

    attack: list[str] = Field(min_length=1)
    benign: list[str] = Field(min_length=1)
    margin: float = Field(0.1, ge=-1, le=1)


class JailbreakConfig(Strict):
    """Attempts to get around the model's rules (role-play with no rules, "developer mode",
    a user overriding the system prompt), read in user turns."""

    threshold: float | None = Field(
        None, ge=0, le=1, description="head probability; default: the head's own threshold"
    )
    action: SafetyAction = "block"
    contrastive: ContrastiveConfig | None = None
    session_turns: int = Field(
        3,
        ge=2,
        description="distinct suspicious user turns in one session that act although no single "
        "turn does (a turn is suspicious at the head's watch level; a repeated turn counts once)",
    )


class InjectionConfig(Strict):
    """Instructions inside content that should only be data (tool results, retrieved passages,
    pasted documents, system prompts built from outside text), read in every message."""

    threshold: float | None = Field(
        None, ge=0, le=1, description="head probability; default: the head's own threshold"
    )
    action: SafetyAction = "block"


class HarmfulConfig(Strict):
    """Plainly harmful requests (the safety head's ``harmful`` class), read in user turns."""

    threshold: float | None = Field(
        None, ge=0, le=1, description="head probability; default: the head's own threshold"
    )
    action: SafetyAction = "block"


class ScanConfig(Strict):
    """How much of a request the learned detectors read. User turns are read in windows of
    the encoder's token budget; tool results and system prompts, where an injected instruction
    is a sentence among data, in short half-overlapping windows that it fills."""

    max_windows: int = Field(
        0,
        ge=0,
        le=64,
        description="windows of user turns encoded per request besides the newest turn's head "
        "and tail (routing's embedding, reused): the middle of a long turn, earlier turns; "
        "windows past it are skipped and counted; 0 reads what routing reads",
    )
    data_windows: int = Field(
        16,
        ge=0,
        le=256,
        description="short windows of tool results and system prompts per request (tool "
        "results first, newest first); 0 reads none",
    )
    data_window_tokens: int = Field(48, ge=8, le=512, description="tokens per short window")


def _known_keys(what: str, known: tuple[str, ...]):
    """A validator that rejects mapping keys outside ``known``, naming the known ones."""

    def check(mapping: dict[str, SafetyAction]) -> dict[str, SafetyAction]:
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; known: {list(known)}")
        return mapping

    return AfterValidator(check)


PiiActions = Annotated[dict[str, SafetyAction], _known_keys("PII entities", KNOWN_ENTITIES)]
ModerationActions = Annotated[
    dict[str, SafetyAction], _known_keys("moderation categories", MODERATION_CATEGORIES)
]


class PiiConfig(Strict):
    entities: PiiActions = Field(
        min_length=1, description="entity type -> action (allow, redact, flag, block, ...)"
    )


ModerationThresholds = Annotated[
    dict[str, Annotated[float, Field(ge=0, le=1)]],
    _known_keys("moderation categories", MODERATION_CATEGORIES),
]


class ModerationConfig(Strict):
    thresholds: ModerationThresholds = Field(
        {}, description="per-category probability that flags it; unset: the head's own"
    )
    action: SafetyAction = "flag"
    actions: ModerationActions = Field({}, description="per-category action overrides")

    def action_for(self, category: str) -> SafetyAction:
        return self.actions.get(category, self.action)


class TenantSafety(Strict):
    """Per-tenant overrides of the safety policy (unset fields keep the policy's value)."""

    jailbreak_action: SafetyAction | None = None
    injection_action: SafetyAction | None = None
    harmful_action: SafetyAction | None = None
    pii: PiiActions = {}
    moderation_action: SafetyAction | None = None


AnswerPiiAction = Literal["allow", "redact", "block"]
AnswerAction = Literal["off", "flag", "block"]
AnswerPiiActions = Annotated[
    dict[str, AnswerPiiAction], _known_keys("PII entities", KNOWN_ENTITIES)
]
#: What the request side redacts by default, plus secrets (an answer that prints a key is
#: redacted, not refused); IP addresses are allowed.
ANSWER_PII_DEFAULT: dict[str, AnswerPiiAction] = {
    "EMAIL_ADDRESS": "redact",
    "PHONE_NUMBER": "redact",
    "US_SSN": "redact",
    "CREDIT_CARD": "redact",
    "IBAN_CODE": "redact",
    "SECRET": "redact",
    "IP_ADDRESS": "allow",
}


class TenantAnswerScreening(Strict):
    """Per-tenant overrides of answer screening (unset fields keep the policy's value)."""

    enabled: bool | None = None
    pii: AnswerPiiActions = Field({}, description="entity -> allow, redact or block")
    moderation: AnswerAction | None = None
    attack_complied: AnswerAction | None = None


class AnswerScreening(Strict):
    """Screening the answer before the client sees it (:mod:`pipeline.safety.answers`)."""

    enabled: bool = Field(True, description="screen answers at all (off: relayed as generated)")
    pii: AnswerPiiActions = Field(
        ANSWER_PII_DEFAULT,
        description="PII entity found in an answer -> allow, redact (replaced by <ENTITY>) or "
        "block (the answer ends with finish_reason content_filter); entities not listed: allow",
    )
    moderation: AnswerAction = Field(
        "off",
        description="moderation head over the answer (flag or block a category over its "
        "threshold, safety.moderation.thresholds); costs an encoder pass per answer (~10+ "
        "CPU-ms, per window when streamed), so off by default",
    )
    attack_complied: AnswerAction = Field(
        "flag",
        description="an answer that is not a refusal to a request a jailbreak, injection or "
        "harmful detector scored at or over attack_score",
    )
    attack_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="request-side detector score from which a complied answer counts; unset: "
        "each detector's watch level (the safety head's suspicious band, 5% of benign text)",
    )
    window_chars: int = Field(
        64,
        ge=32,
        le=8192,
        description="streamed answers are screened in windows of this many characters and one "
        "window is held back (a PII value crossing windows is caught whole when it is no longer "
        "than a window); the client sees text one window late",
    )
    refusal: str = Field(
        "The answer was withheld by the content filter.",
        description="the text of an answer blocked before any of it reached the client",
    )
    tenants: dict[str, TenantAnswerScreening] = {}

    def for_tenant(self, tenant: str) -> AnswerScreening:
        """The effective answer screening of ``tenant``."""
        override = self.tenants.get(tenant)
        if override is None:
            return self
        return self.model_copy(
            update={
                "enabled": self.enabled if override.enabled is None else override.enabled,
                "pii": {**self.pii, **override.pii},
                "moderation": override.moderation or self.moderation,
                "attack_complied": override.attack_complied or self.attack_complied,
            }
        )


class SafetyConfig(Strict):
    jailbreak: JailbreakConfig = JailbreakConfig()
    injection: InjectionConfig = InjectionConfig()
    harmful: HarmfulConfig = HarmfulConfig()
    scan: ScanConfig = ScanConfig()
    pii: PiiConfig
    moderation: ModerationConfig = ModerationConfig()
    safe_model: str | None = Field(None, description="the model route_safe sends requests to")
    refusal: str = "I can't help with that request."
    tenants: dict[str, TenantSafety] = {}
    answers: AnswerScreening = AnswerScreening()

    def for_tenant(self, tenant: str) -> SafetyConfig:
        """The effective safety policy of ``tenant``."""
        override = self.tenants.get(tenant)
        if override is None:
            return self
        jailbreak = self.jailbreak.model_copy(
            update={"action": override.jailbreak_action or self.jailbreak.action}
        )
        injection = self.injection.model_copy(
            update={"action": override.injection_action or self.injection.action}
        )
        harmful = self.harmful.model_copy(
            update={"action": override.harmful_action or self.harmful.action}
        )
        pii = PiiConfig(entities={**self.pii.entities, **override.pii})
        moderation = self.moderation.model_copy(
            update={"action": override.moderation_action or self.moderation.action}
        )
        return self.model_copy(
            update={
                "jailbreak": jailbreak,
                "injection": injection,
                "harmful": harmful,
                "pii": pii,
                "moderation": moderation,
            }
        )

    def actions(self) -> list[SafetyAction]:
        """Every action this policy can take, tenants included."""
        found: list[SafetyAction] = [
            self.jailbreak.action,
            self.injection.action,
            self.harmful.action,
            self.moderation.action,
            *self.moderation.actions.values(),
            *self.pii.entities.values(),
        ]
        for t in self.tenants.values():
            found += [
                a
                for a in (
                    t.jailbreak_action,
                    t.injection_action,
                    t.harmful_action,
                    t.moderation_action,
                )
                if a
            ]
            found += list(t.pii.values())
        return found


class Condition(Strict):
    """One test of a signal; exactly one operator is set."""

    signal: str
    equals: str | int | float | bool | None = None
    not_equals: str | int | float | bool | None = None
    in_: list[str | int] | None = Field(None, alias="in")
    gte: float | None = None
    lte: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        if not known_signal(self.signal):
            raise ValueError(
                f"unknown signal {self.signal!r}; use one of: {', '.join(RULE_SIGNALS)}, "
                "keyword.<rule>, embedding.<rule>"
            )
        ops = [
            k for k in ("equals", "not_equals", "in_", "gte", "lte") if getattr(self, k) is not None
        ]
        if len(ops) != 1:
            raise ValueError(
                "a condition needs exactly one operator of equals, not_equals, in, gte, lte; "
                f"found {len(ops)}"
            )
        return self

    def holds(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals
        if self.not_equals is not None:
            return value != self.not_equals
        if self.in_ is not None:
            return value in self.in_
        if self.gte is not None:
            return value is not None and value >= self.gte
        return value is not None and self.lte is not None and value <= self.lte


def _fits(value: Any, kind: type) -> bool:
    """Whether a rule's literal can be compared with a signal of type ``kind``."""
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _value(values: dict[str, Any], signal: str) -> Any:
    """A signal's value; a keyword/embedding rule that did not fire is False."""
    if signal in values:
        return values[signal]
    return False if signal.partition(".")[0] in RULE_FAMILIES else None


def _node_kind(value: Any) -> str:
    if isinstance(value, Condition) or (isinstance(value, dict) and "signal" in value):
        return "condition"
    return "rule"


#: A node of a rule tree: a condition on one signal, or a nested all/any/not rule.
Node = Annotated[
    Annotated["Condition", Tag("condition")] | Annotated["Rule", Tag("rule")],
    Discriminator(_node_kind),
]


class Rule(Strict):
    """Holds when every ``all`` node holds, at least one ``any`` node does (if any are given)
    and the ``not`` node does not. Nodes are conditions or nested rules. An empty rule holds."""

    all: list[Node] = []
    any: list[Node] = []
    not_: Node | None = Field(None, alias="not")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def holds(self, values: dict[str, Any]) -> bool:
        if not all(_holds(node, values) for node in self.all):
            return False
        if self.any and not any(_holds(node, values) for node in self.any):
            return False
        return self.not_ is None or not _holds(self.not_, values)

    def conditions(self, where: str = "when") -> Iterator[tuple[str, Condition]]:
        """Every condition of the tree with its path inside the decision."""
        for field, nodes in (("all", self.all), ("any", self.any)):
            for i, node in enumerate(nodes):
                yield from _conditions(node, f"{where}.{field}[{i}]")
        if self.not_ is not None:
            yield from _conditions(self.not_, f"{where}.not")


def _holds(node: Condition | Rule, values: dict[str, Any]) -> bool:
    if isinstance(node, Condition):
        return node.holds(_value(values, node.signal))
    return node.holds(values)


def _conditions(node: Condition | Rule, where: str) -> Iterator[tuple[str, Condition]]:
    if isinstance(node, Condition):
        yield where, node
    else:
        yield from node.conditions(where)


Rule.model_rebuild()

#: Selection strategies, one module each under ``pipeline/router/strategies``.
Strategy = Literal[
    "static", "cost_quality", "knn", "predicted", "thompson", "contextual", "cascade"
]


class Exploration(Strict):
    """Bounds on the share of a decision's requests that explore (pick a model other than the
    one with the best estimate), measured over the router's recent choices."""

    floor: float = Field(0.0, ge=0, le=1, description="explore at least this often")
    ceiling: float = Field(0.25, ge=0, le=1, description="explore at most this often")

    @model_validator(mode="after")
    def _ordered(self) -> Exploration:
        if self.floor > self.ceiling:
            raise ValueError(f"floor {self.floor} is above ceiling {self.ceiling}")
        return self


class CacheConfig(Strict):
    """Semantic response cache: exact match, then embedding similarity >= ``similarity``."""

    enabled: bool = False
    similarity: float = Field(0.95, gt=0, le=1)
    ttl_s: float = Field(3600, gt=0)


CascadeCheck = Literal["empty", "refusal", "logprob", "arithmetic"]


class CascadeConfig(Strict):
    """Cheapest capable model first; escalate to the next when the answer fails a check."""

    checks: list[CascadeCheck] = ["empty", "refusal", "logprob"]
    min_mean_logprob: float = Field(
        -1.0, le=0, description="escalate below this mean token logprob, when the pool returns it"
    )
    max_models: int = Field(3, ge=2, description="models tried at most, escalations included")


class DecisionSafety(Strict):
    """Per-decision safety actions; they may only tighten the verdict (never loosen it)."""

    jailbreak_action: SafetyAction | None = None
    injection_action: SafetyAction | None = None
    harmful_action: SafetyAction | None = None
    moderation_action: SafetyAction | None = None
    pii: PiiActions = {}


class StickyConfig(Strict):
    """Sticky sessions: a session's next turn stays on the model that served its last one
    unless switching wins by more than the switch cost (``pipeline/router/sticky.py``)."""

    enabled: bool = Field(True, description="keep a session on its model while it is usable")
    margin: float = Field(
        0.2,
        ge=0,
        le=1,
        description="quality points a switch must win by besides the cache it loses (0.2: the "
        "cheapest margin that kept the quality estimate of sticky-off on half the sessions of "
        "`wrp eval sticky`; vLLM Semantic Router's switch margin + stay bias + handoff penalty)",
    )
    cached_input_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="price of a cached prompt token as a share of the model's input price "
        "(hosted providers bill 0.1-0.5)",
    )
    idle_s: float = Field(
        300,
        gt=0,
        le=86400,
        description="a session idle longer starts afresh: its KV cache is likely evicted",
    )


class DecisionSpec(Strict):
    name: str = Field(min_length=1)
    priority: int = 0
    when: Rule = Rule()
    models: list[str] = Field(min_length=1, description="candidates, in order of preference")
    strategy: Strategy = "static"
    cost_weight: float | None = Field(
        None,
        description="lambda: quality traded per USD of 1,000 such requests (below 0 pays more "
        "for quality than the estimates alone would)",
    )
    reasoning: bool = Field(False, description="turn on reasoning for models that have it")
    exploration: Exploration | None = None
    cache: CacheConfig | None = None
    cascade: CascadeConfig = CascadeConfig()
    safety: DecisionSafety | None = None
    sticky: StickyConfig | None = Field(None, description="overrides router.sticky")


class ThompsonConfig(Strict):
    """Beta prior of every arm: the card's quality prior q becomes Beta(q*n, (1-q)*n)."""

    prior_strength: float = Field(
        2.0, gt=0, description="n: how many observations the prior is worth"
    )


class ImplicitConfig(Strict):
    """Implicit feedback: the signals stage reads a session's next user turn as evidence about
    the previous answer (``pipeline.learn.implicit``)."""

    enabled: bool = Field(True, description="label next turns and send them as feedback")
    weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="what one implicit judgement counts for in the learner, against 1 for an "
        "explicit one (0: record the labels, learn nothing from them)",
    )
    rewards: dict[ImplicitLabel, float] = Field(
        {"moved_on": 0.75, "clarify": 0.4, "re_ask": 0.1, "says_wrong": 0.0},
        description="reward in [0, 1] of each label: moving on is weak approval (silence is "
        "not praise), a question about the answer half-understood, a repeated question or a "
        "complaint a failure",
    )
    re_ask_similarity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="cosine between two user turns at or above which the second re-asks the "
        "first (chosen on the tune half of the hand labels, `wrp eval implicit`)",
    )
    max_gap_s: float = Field(
        900, gt=0, description="a next turn later than this after the previous says nothing"
    )

    @model_validator(mode="after")
    def _every_label_rewarded(self) -> ImplicitConfig:
        missing = set(get_args(ImplicitLabel)) - set(self.rewards)
        if missing:
            raise ValueError(f"rewards: give a reward for {', '.join(sorted(missing))}")
        bad = {k: v for k, v in self.rewards.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"rewards must lie in [0, 1] (got {bad})")
        return self


class LearningConfig(Strict):
    half_life_s: float = Field(
        7 * 86400, gt=0, description="evidence loses half its weight after this long"
    )
    slo_miss_penalty: float = Field(0.5, ge=0, le=1, description="failure weight of an SLO miss")
    implicit: ImplicitConfig = ImplicitConfig()


class KnnConfig(Strict):
    index: Path | None = Field(None, description="labelled neighbours (.npz, `wrp router index`)")
    k: int = Field(
        64,
        ge=1,
        description="neighbours per model (64: best held-out Brier on the train rows "
        "of RouteLLM MMLU, GSM8K and MMLU-Pro lies between 32 and 128)",
    )
    prior_weight: float = Field(2.0, ge=0, description="pseudo-neighbours at the card's prior")


class PredictorConfig(Strict):
    path: Path | None = Field(
        None, description="trained success predictor (.npz, `wrp router train`)"
    )
    prior_weight: float = Field(
        1000.0,
        gt=0,
        description="feedback observations the predictor's estimate is worth against the "
        "feedback's correction (lower follows drift sooner but chases the winner's curse: the "
        "model chosen most is the one most over-estimated)",
    )


class ContextualConfig(Strict):
    alpha: float = Field(0.3, ge=0, description="LinUCB confidence width")
    ridge: float = Field(1.0, gt=0, description="regulariser of each arm's design matrix")


class PoolAwareConfig(Strict):
    enabled: bool = True
    saturation: float = Field(
        0.9, gt=0, le=1, description="a pool this full (in flight / capacity) is skipped"
    )
    ttft_budget_ms: float | None = Field(
        None, gt=0, description="skip pools whose TTFT EWMA exceeds this (requests may set less)"
    )


class TenantRouting(Strict):
    cost_weight: float | None = Field(None, description="overrides decisions' lambda")
    explore: bool = Field(True, description="false freezes exploration: best estimate only")


class RouterConfig(Strict):
    decisions: list[DecisionSpec] = []
    default: DecisionSpec
    cost_weight: float = Field(0.0, description="lambda of decisions that set none")
    exploration: Exploration = Exploration()
    cache: CacheConfig = CacheConfig()
    thompson: ThompsonConfig = ThompsonConfig()
    learning: LearningConfig = LearningConfig()
    knn: KnnConfig = KnnConfig()
    predictor: PredictorConfig = PredictorConfig()
    contextual: ContextualConfig = ContextualConfig()
    pool_aware: PoolAwareConfig = PoolAwareConfig()
    sticky: StickyConfig = StickyConfig()
    tenants: dict[str, TenantRouting] = {}

    def find(self, name: str) -> DecisionSpec | None:
        return next((d for d in [*self.decisions, self.default] if d.name == name), None)

    def ordered(self) -> list[DecisionSpec]:
        """Decisions by descending priority, file order breaking ties; the default last."""
        ranked = sorted(enumerate(self.decisions), key=lambda p: (-p[1].priority, p[0]))
        return [d for _, d in ranked] + [self.default]


BudgetScope = Literal["tenant", "api_key", "session"]
BudgetMetric = Literal["usd", "tokens", "requests"]
BudgetWindow = Literal["minute", "day", "month"]
BudgetAction = Literal["reject", "downgrade", "flag"]


class Budget(Strict):
    """A limit on what one tenant, API key or session is served per calendar window (UTC).

    Usage counts what outcomes say was served (their tokens and USD), folded by the learner into
    ``wrp.usage``; a request routed while its scope is at or over the limit gets ``action``:
    ``reject`` (OpenAI's 429: ``rate_limit_exceeded`` for tokens and requests,
    ``insufficient_quota`` for USD), ``downgrade`` (the cheapest fitting candidate) or ``flag``
    (routed as usual, marked in analytics)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    scope: BudgetScope = Field(description="what the limit is per: tenant, api_key or session")
    metric: BudgetMetric = Field(description="usd (cost at the cards' prices), tokens, requests")
    window: BudgetWindow = Field(description="calendar window, UTC: minute, day or month")
    limit: float = Field(gt=0, description="the most one scope may be served per window")
    action: BudgetAction = "reject"
    tenants: list[Annotated[str, Field(pattern=TENANT)]] = Field(
        [], description="tenants it governs (empty: every tenant)"
    )

    def governs(self, tenant: str) -> bool:
        return not self.tenants or tenant in self.tenants


class Policy(Strict):
    version: Literal[1] = 1
    models: list[ModelCard] = Field(min_length=1)
    pools: list[Pool] = Field(min_length=1)
    signals: SignalsConfig
    safety: SafetyConfig
    router: RouterConfig
    budgets: list[Budget] = Field([], description="spend, token and request limits")
    tools: ToolSelectionConfig = ToolSelectionConfig()

    @model_validator(mode="after")
    def _references(self) -> Policy:
        pools = [p.name for p in self.pools]
        models = [m.name for m in self.models]
        problems: list[str] = []
        for label, names in (("pools", pools), ("models", models)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{label}: duplicate name(s) {dupes}; names must be unique")
        for i, card in enumerate(self.models):
            if card.pool not in pools:
                problems.append(
                    f"models[{i}].pool: unknown pool {card.pool!r}; declare it under pools: "
                    f"or use one of {pools}"
                )
        safe = self.safety.safe_model
        if safe is not None and safe not in models:
            problems.append(f"safety.safe_model: unknown model {safe!r}; use one of {models}")
        if safe is None and "route_safe" in self.safety.actions():
            problems.append(
                "safety: an action is route_safe but safety.safe_model is not set; name the model"
            )
        decisions = [*self.router.decisions, self.router.default]
        for i, spec in enumerate(decisions):
            where = "router.default" if spec is self.router.default else f"router.decisions[{i}]"
            for j, model in enumerate(spec.models):
                if model not in models:
                    problems.append(
                        f"{where}.models[{j}]: unknown model {model!r}; declare it under models: "
                        f"or use one of {models}"
                    )
            for path, cond in spec.when.conditions():
                problem = self._condition_problem(cond)
                if problem:
                    problems.append(f"{where}.{path}: {problem}")
        names = [d.name for d in decisions]
        if len(set(names)) != len(names):
            problems.append("router: decision names must be unique (the default's too)")
        budgets = [b.name for b in self.budgets]
        dupes = sorted({n for n in budgets if budgets.count(n) > 1})
        if dupes:
            problems.append(f"budgets: duplicate name(s) {dupes}; names must be unique")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _condition_problem(self, cond: Condition) -> str | None:
        """What is wrong with a condition's signal or values, given the rest of the policy."""
        family, _, rule = cond.signal.partition(".")
        declared = {
            "keyword": [r.name for r in self.signals.keywords],
            "embedding": [r.name for r in self.signals.embeddings],
        }
        if family in declared and rule not in declared[family]:
            return (
                f"{cond.signal}: no {family} rule named {rule!r} under signals.{family}s "
                f"(declared: {declared[family]})"
            )
        vocabulary = {
            "domain": DOMAINS,
            "complexity": COMPLEXITY,
            "load_shape": LOAD_SHAPES,
            "session": ("warm", "cold"),
            "context_class": tuple(c.name for c in self.signals.context_classes),
        }.get(cond.signal)
        kind = bool if family in declared else RULE_SIGNALS[cond.signal]
        if kind is str and (cond.gte is not None or cond.lte is not None):
            return f"{cond.signal} is text: compare it with equals, not_equals or in, not gte/lte"
        values = cond.in_ or ([] if cond.equals is None else [cond.equals])
        if cond.not_equals is not None:
            values = [*values, cond.not_equals]
        mistyped = [v for v in values if not _fits(v, kind)]
        if mistyped:
            return f"{cond.signal} takes {kind.__name__} values; got {mistyped}"
        unknown = [v for v in values if vocabulary is not None and v not in vocabulary]
        if unknown:
            return f"unknown {cond.signal} value(s) {unknown}; known: {list(vocabulary or ())}"
        return None

    def model(self, name: str) -> ModelCard:
        for card in self.models:
            if card.name == name:
                return card
        raise KeyError(name)

    def strongest(self, candidates: list[str], domain: str | None) -> ModelCard | None:
        """The candidate with the highest quality prior for ``domain`` (the dearer one on a
        tie): what a router that always plays safe would send the request to."""
        cards = [card for card in self.models if card.name in candidates]
        if not cards:
            return None
        return max(cards, key=lambda c: (c.prior_quality(domain), c.price.cost(1000, 1000)))

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)


class PolicyError(ValueError):
    """A policy file that cannot be used; ``problems`` are ``path: message`` lines."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid policy\n" + "\n".join(f"  {p}" for p in problems))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in ("condition", "rule"):  # the tags of a rule-tree node, not in the file
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_policy(data: Any, path: Path) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            loc = _format_loc(err["loc"])
            if err["type"] == "missing":
                msg = "required field is missing; add it"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling"
            problems.extend(
                line if loc == "(top level)" else f"{loc}: {line}" for line in msg.splitlines()
            )
        raise PolicyError(path, problems) from None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PolicyError(
            path, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(path, ["the file must be a YAML mapping with models, pools, ... keys"])
    return parse_policy(data, path)
