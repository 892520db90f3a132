"""The ``pools:`` section: endpoints, their selection policy, circuit, credentials, simulator."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pipeline.policy.strict import Strict

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
    """How `wrp up` / `wrp sim` simulate a pool's endpoints (``pipeline.pool.sim.engine``)."""

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
