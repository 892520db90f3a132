"""The topic catalog (``topics/catalog.yaml``): names, configs and payload models of every topic."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.envelope import PAYLOADS, Contract
from pipeline.settings import CATALOG_PATH

REQUESTS = "wrp.requests"
SIGNALS = "wrp.signals"
SCREENED = "wrp.screened"
ROUTED = "wrp.routed"
RESPONSES = "wrp.responses"
STREAM = "wrp.stream"
OUTCOMES = "wrp.outcomes"
FEEDBACK = "wrp.feedback"
CREDITS = "wrp.learner-credits"
ROUTER_STATE = "wrp.router-state"
POOL_STATE = "wrp.pool-state"
USAGE = "wrp.usage"
CACHE = "wrp.cache"
DLQ = "wrp.dlq"
STAGE_HEALTH = "wrp.stage-health"


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    partitions: int = Field(ge=1)
    retention_ms: int
    cleanup_policy: Literal["delete", "compact"]
    key: str
    payload: str
    producers: list[str]
    consumers: list[str]
    reply: bool = Field(False, description="requests may name it as their reply_to")

    @property
    def payload_model(self) -> type[Contract]:
        return PAYLOADS[self.payload]

    def configs(self) -> dict[str, str]:
        """Topic configs given explicitly at creation."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topics: list[TopicSpec]

    @property
    def reply_topics(self) -> frozenset[str]:
        return frozenset(t.name for t in self.topics if t.reply)

    def get(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(f"topic {name!r} is not in the catalog")


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    catalog = Catalog.model_validate(yaml.safe_load(path.read_text()))
    unknown = {t.payload for t in catalog.topics} - PAYLOADS.keys()
    if unknown:
        raise ValueError(f"{path}: unknown payload model(s) {sorted(unknown)}")
    return catalog


def payload_schemas() -> dict[str, str]:
    """JSON Schema text of each payload model, as written to ``topics/schemas/<name>.json``."""
    return {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in sorted(PAYLOADS.items())
    }
