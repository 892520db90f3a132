from pathlib import Path

import pytest
import yaml

from pipeline.policy import PolicyError, load_policy
from pipeline.settings import DEFAULT_POLICY


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def default_data() -> dict:
    return yaml.safe_load(DEFAULT_POLICY.read_text())


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_default_policy_is_valid_and_orders_decisions_by_priority():
    policy = load_policy(DEFAULT_POLICY)
    names = [d.name for d in policy.router.ordered()]
    assert names[0] == "long_context" and names[-1] == "general"


def test_unknown_model_in_a_decision_names_the_path_and_the_known_models(tmp_path):
    data = default_data()
    data["router"]["decisions"][1]["models"][0] = "gpt-9"
    (line,) = problems(write(tmp_path, data))
    assert line.startswith("router.decisions[1].models[0]: unknown model 'gpt-9'")
    assert "wrp-small-8b" in line


def test_missing_and_misspelled_fields_are_named(tmp_path):
    data = default_data()
    del data["models"][0]["pool"]
    data["pools"][0]["timeout"] = 3
    found = problems(write(tmp_path, data))
    assert "models[0].pool: required field is missing; add it" in found
    assert "pools[0].timeout: unknown field; remove it or check its spelling" in found


def test_condition_on_an_unknown_signal_lists_the_known_ones(tmp_path):
    data = default_data()
    data["router"]["decisions"][0]["when"] = {"all": [{"signal": "mood", "equals": "happy"}]}
    found = problems(write(tmp_path, data))
    assert any("unknown signal 'mood'" in p and "domain" in p for p in found)


def test_broken_yaml_reports_line_and_column(tmp_path):
    (line,) = problems(write(tmp_path, "models: [unclosed\npools: {"))
    assert line.startswith("line ") and "not valid YAML" in line


def test_missing_file_is_a_clear_error(tmp_path):
    (line,) = problems(tmp_path / "nope.yaml")
    assert "cannot read the file" in line


def test_model_in_an_unknown_pool(tmp_path):
    data = default_data()
    data["models"][0]["pool"] = "gpu-9"
    found = problems(write(tmp_path, data))
    assert any(p.startswith("models[0].pool: unknown pool 'gpu-9'") for p in found)


def test_signal_rules_safety_names_and_values_are_checked(tmp_path):
    data = default_data()
    data["router"]["decisions"][2]["when"] = {
        "any": [
            {"signal": "keyword.nope", "equals": True},
            {"signal": "domain", "in": ["cooking"]},
            {"signal": "complexity", "equals": "extreme"},
        ]
    }
    data["signals"]["keywords"].append({"name": "bad", "regex": True, "any": ["("]})
    data["safety"]["tenants"]["strict"]["pii"] = {"PASSPORT": "block"}
    data["safety"]["safe_model"] = None
    data["safety"]["moderation"]["actions"] = {"self-harm": "route_safe"}
    found = "\n".join(problems(write(tmp_path, data)))
    assert "keyword rule 'bad': invalid regex '('" in found
    assert "unknown PII entities ['PASSPORT']" in found
    data["signals"]["keywords"].pop()
    data["safety"]["tenants"]["strict"]["pii"] = {}
    found = "\n".join(problems(write(tmp_path, data)))
    assert "keyword.nope: no keyword rule named 'nope'" in found
    assert "unknown domain value(s) ['cooking']" in found
    assert "unknown complexity value(s) ['extreme']" in found
    assert "route_safe but safety.safe_model is not set" in found


def test_rules_that_would_fail_or_stall_at_request_time_are_refused(tmp_path):
    data = default_data()
    data["router"]["decisions"][0]["when"] = {
        "all": [{"signal": "domain", "gte": 0.5}, {"signal": "tools_present", "equals": "yes"}]
    }
    found = "\n".join(problems(write(tmp_path, data)))
    assert "domain is text" in found and "tools_present takes bool values" in found
    data = default_data()
    data["signals"]["keywords"][0]["any"].append(r"\bSELECT\b.+\bFROM\b")
    (line,) = problems(write(tmp_path, data))
    assert "unbounded .* or .+" in line
