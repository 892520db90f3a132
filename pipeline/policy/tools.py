"""The ``tools:`` section: narrowing a request's tools to the relevant ones."""

from __future__ import annotations

from pydantic import Field

from pipeline.policy.strict import Strict


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
