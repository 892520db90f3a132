"""OpenAI's published OpenAPI document (``../shared/data/openai_spec/openapi.yaml``) as JSON-schema
validators of its component schemas; a test that needs it skips when it is absent.

The document says OpenAPI 3.1 but still marks some schemas ``nullable: true`` (3.0's way of
allowing null, e.g. a stream chunk's ``finish_reason``): those become ``anyOf [schema, null]``."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from pipeline.settings import DataMissing, data_dir

SPEC = "openai_spec/openapi.yaml"


@cache
def _components() -> dict[str, Any]:
    try:
        path = data_dir() / SPEC
    except DataMissing as exc:
        pytest.skip(f"OpenAI's OpenAPI document is needed: {exc}")
    if not path.is_file():
        pytest.skip(f"OpenAI's OpenAPI document is needed: {path} is absent")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _null_allowed(yaml.load(path.read_text("utf-8"), Loader=loader)["components"])


def _null_allowed(schema: Any) -> Any:
    """``schema`` with every ``nullable: true`` schema turned into ``anyOf [it, null]``."""
    if isinstance(schema, list):
        return [_null_allowed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: _null_allowed(value)
        for key, value in schema.items()
        if not (key == "nullable" and isinstance(value, bool))
    }
    if schema.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def conforms(body: Any, schema: str) -> None:
    """Fail with every violation when ``body`` is not a ``components/schemas/<schema>``."""
    root = {"$ref": f"#/components/schemas/{schema}", "components": _components()}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"not an OpenAI {schema}: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors
    )
