"""The ``safety:`` section: detectors and their actions, PII, moderation, answer screening."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pipeline.envelope import SafetyAction
from pipeline.policy.strict import Strict
from pipeline.vocabulary import KNOWN_ENTITIES, MODERATION_CATEGORIES


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
