from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.policy.check import Finding, locate
from pipeline.preflight import check_policy
from pipeline.settings import DEFAULT_POLICY

DEFAULT_TEXT = DEFAULT_POLICY.read_text()

#: The default policy's first decision, as the file spells it.
LONG_CONTEXT = """    - name: long_context
      priority: 100
      when:
        all: [{signal: context_class, equals: long}]
      models: [wrp-long-128k]
"""


def edited(old: str, new: str, text: str = DEFAULT_TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str, occurrence: int = 0) -> int:
    """1-based line of the ``occurrence``-th line holding ``needle``."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[occurrence]


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]


def with_decisions(tmp_path: Path, decisions: str) -> tuple[Path, str]:
    """The default policy with ``decisions`` added before its agentic decision."""
    text = edited("    - name: agentic\n", decisions + "    - name: agentic\n")
    return write(tmp_path, text), text


def test_default_policy_has_no_errors_or_warnings():
    findings = check_policy(DEFAULT_POLICY)
    shown = "\n".join(f.format(DEFAULT_POLICY) for f in findings)
    assert not errors(findings), shown
    assert not warnings(findings), shown


def test_locate_maps_paths_to_lines_and_falls_back_to_the_deepest_ancestor():
    root = yaml.compose(DEFAULT_TEXT, Loader=yaml.SafeLoader)
    assert locate(root, "router") == line_of(DEFAULT_TEXT, "router:")
    assert locate(root, "router.decisions[1]") == line_of(DEFAULT_TEXT, "- name: agentic")
    assert locate(root, "router.decisions[1].models") == line_of(
        DEFAULT_TEXT, "models: [wrp-large-70b, wrp-small-8b]"
    )
    assert locate(root, "router.decisions[1].nothing[3]") == line_of(
        DEFAULT_TEXT, "- name: agentic"
    )
    # pydantic's union tag ("condition") is not in the file
    assert locate(root, "router.decisions[3].when.any[1].condition.equals") == line_of(
        DEFAULT_TEXT, "{signal: complexity, equals: hard}"
    )
    assert locate(root, "models[2].quality.computer science") == line_of(
        DEFAULT_TEXT, "computer science: 0.85"
    )


def test_unknown_model_is_an_error_at_the_candidate_line(tmp_path):
    text = edited(
        "      models: [wrp-coder-32b, wrp-large-70b]",
        "      models:\n        - wrp-coder-32b\n        - gpt-9",
    )
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "error"
    assert found.line == line_of(text, "- gpt-9")
    assert found.message.startswith("router.decisions[2].models[1]: unknown model 'gpt-9'")


def test_unknown_signal_is_an_error_at_the_condition_line(tmp_path):
    text = edited("- {signal: complexity, equals: hard}", "- {signal: mood, equals: hard}")
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "error" and "unknown signal 'mood'" in found.message
    assert found.line == line_of(text, "{signal: mood, equals: hard}")


def test_unknown_pool_is_an_error_at_the_pool_line(tmp_path):
    text = edited("    pool: long\n", "    pool: huge\n")
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "error" and "unknown pool 'huge'" in found.message
    assert found.line == line_of(text, "pool: huge")


def test_missing_field_points_at_its_parent(tmp_path):
    text = edited("      models: [wrp-long-128k]\n", "")
    (found,) = check_policy(write(tmp_path, text))
    assert found.message == "router.decisions[0].models: required field is missing; add it"
    assert found.line == line_of(text, "- name: long_context")


def test_yaml_syntax_error_has_its_line(tmp_path):
    text = edited("  cost_weight: 0.02\n", "  cost_weight: [0.02\n")
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "error" and "not valid YAML" in found.message
    assert found.line is not None and found.line > line_of(text, "cost_weight: [0.02")


def test_missing_default_is_an_error_at_the_router_line(tmp_path, capsys):
    default = DEFAULT_TEXT[DEFAULT_TEXT.index("  default:\n    name: general") :]
    path = write(tmp_path, edited(default, ""))
    (found,) = check_policy(path)
    assert found.severity == "error"
    assert found.message.startswith("no default decision: add router.default")
    assert found.line == line_of(DEFAULT_TEXT, "router:")
    assert main(["policy", "check", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"{path}:{found.line}: error: no default decision" in out
    assert "ok" not in out


def test_candidate_too_small_for_a_long_context_decision(tmp_path):
    text = edited(
        "      models: [wrp-long-128k]\n",
        "      models: [wrp-long-128k, wrp-large-70b]\n",
    )
    text = edited(
        "  - name: wrp-large-70b\n    pool: large\n    context_length: 32768",
        ("  - name: wrp-large-70b\n    pool: large\n    context_length: 8192"),
        text,
    )
    findings = check_policy(write(tmp_path, text))
    (found,) = findings
    assert found.severity == "error"
    assert found.line == line_of(text, "models: [wrp-long-128k, wrp-large-70b]")
    assert "'long_context'" in found.message and "'wrp-large-70b'" in found.message


def test_candidate_missing_only_the_longest_prompts_is_a_warning(tmp_path):
    text = edited(
        "      models: [wrp-long-128k]\n",
        "      models:\n        - wrp-long-128k\n        - wrp-large-70b\n",
    )
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "warning"
    assert found.line == line_of(text, "- wrp-large-70b")
    assert "longest prompts" in found.message


def test_in_takes_the_smallest_allowed_class(tmp_path):
    text = edited(
        "all: [{signal: context_class, equals: long}]\n      models: [wrp-long-128k]",
        "all: [{signal: context_class, in: [medium, long]}]\n"
        "      models: [wrp-long-128k, wrp-small-8b]",
    )
    assert check_policy(write(tmp_path, text)) == []  # 8192 holds every medium prompt


def test_shadowed_decision_is_a_warning_at_its_line(tmp_path):
    path, text = with_decisions(
        tmp_path,
        """    - name: science
      priority: 75
      when:
        all: [{signal: domain, in: [math, physics]}]
      models: [wrp-large-70b]
    - name: hard_math
      priority: 20
      when:
        all:
          - {signal: domain, equals: math}
          - {signal: complexity, equals: hard}
      models: [wrp-large-70b]
""",
    )
    found = check_policy(path)
    shadowed = [f for f in found if "'hard_math' can never match" in f.message]
    assert len(shadowed) == 1, found
    assert shadowed[0].severity == "warning"
    assert shadowed[0].line == line_of(text, "- name: hard_math")
    assert "'science'" in shadowed[0].message
    assert not errors(found)


def test_not_shadowed_when_the_earlier_rule_is_narrower(tmp_path):
    path, _ = with_decisions(
        tmp_path,
        """    - name: hard_law
      priority: 75
      when:
        all:
          - {signal: domain, equals: law}
          - {signal: complexity, equals: medium}
      models: [wrp-large-70b]
    - name: humanities
      priority: 20
      when:
        all: [{signal: domain, in: [law, history]}]
      models: [wrp-large-70b]
""",
    )
    assert not [f for f in check_policy(path) if "can never match" in f.message]


def test_catch_all_decision_shadows_the_default(tmp_path):
    path, text = with_decisions(
        tmp_path,
        """    - name: everything
      priority: 1
      models: [wrp-large-70b]
""",
    )
    found = [f for f in check_policy(path) if "can never match" in f.message]
    assert [f.line for f in found] == [line_of(text, "  default:")]
    assert "the default 'general'" in found[0].message


def test_same_priority_overlap_is_a_warning(tmp_path):
    path, text = with_decisions(
        tmp_path,
        """    - name: hard
      priority: 95
      when:
        all: [{signal: complexity, equals: hard}]
      models: [wrp-large-70b]
    - name: warm
      priority: 95
      when:
        all: [{signal: session, equals: warm}]
      models: [wrp-small-8b]
""",
    )
    (found,) = check_policy(path)
    assert found.severity == "warning"
    assert found.line == line_of(text, "- name: warm")
    assert "'hard'" in found.message and "same priority 95" in found.message


@pytest.mark.parametrize(
    "first, second",
    [
        ("{signal: tenant, equals: acme}", "{signal: tenant, in: [globex, initech]}"),
        ("{signal: prompt_tokens, gte: 1000}", "{signal: prompt_tokens, lte: 999}"),
        ("{signal: session, equals: warm}", "{signal: session, not_equals: warm}"),
    ],
)
def test_no_overlap_warning_when_conditions_contradict(tmp_path, first, second):
    path, _ = with_decisions(
        tmp_path,
        f"""    - name: one
      priority: 95
      when:
        all: [{first}]
      models: [wrp-large-70b]
    - name: two
      priority: 95
      when:
        all: [{{signal: images_present, equals: true}}, {second}]
      models: [wrp-small-8b]
""",
    )
    assert check_policy(path) == []


def test_duplicate_candidate_is_a_warning(tmp_path):
    text = edited(
        "      models: [wrp-coder-32b, wrp-large-70b]",
        "      models: [wrp-coder-32b, wrp-large-70b, wrp-coder-32b]",
    )
    (found,) = check_policy(write(tmp_path, text))
    assert found.severity == "warning" and "'wrp-coder-32b' twice" in found.message
    assert found.line == line_of(text, "[wrp-coder-32b, wrp-large-70b, wrp-coder-32b]")


def test_cli_exit_codes_and_order(tmp_path, capsys):
    assert main(["policy", "check", str(DEFAULT_POLICY)]) == 0
    assert f"{DEFAULT_POLICY}: ok (" in capsys.readouterr().out

    text = edited(
        "      models: [wrp-coder-32b, wrp-large-70b]",
        "      models: [wrp-coder-32b, wrp-large-70b, wrp-coder-32b]",
    )
    path = write(tmp_path, text)
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:") and ": warning: " in out[0]
    assert out[-1].startswith(f"{path}: ok (") and "1 warning(s)" in out[-1]

    # errors first: a candidate too small for a medium-only decision, then a duplicate that
    # comes earlier in the file
    text = edited(
        "      models: [wrp-long-128k]\n", "      models: [wrp-long-128k, wrp-long-128k]\n"
    )
    text = edited(
        "any: [{signal: keyword.code, equals: true}, {signal: domain, in: [computer science]}]\n"
        "      models: [wrp-coder-32b, wrp-large-70b]",
        "all: [{signal: context_class, equals: medium}]\n      models: [wrp-small-8b]",
        text,
    )
    text = edited("    context_length: 8192\n", "    context_length: 2048\n", text)
    path = write(tmp_path, text)
    assert main(["policy", "check", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    error_line, warning_line = (
        line_of(text, "[wrp-small-8b]\n".strip()),
        line_of(text, "[wrp-long-128k, wrp-long-128k]"),
    )
    assert warning_line < error_line
    assert out[0].startswith(f"{path}:{error_line}: error: decision 'code'")
    assert out[1].startswith(f"{path}:{warning_line}: warning: decision 'long_context'")
    assert out[-1] == f"{path}: 1 error(s), 1 warning(s)"


def test_cli_reports_validation_errors_with_exit_code_2(tmp_path, capsys):
    text = edited("    pool: long\n", "    pool: huge\n")
    path = write(tmp_path, text)
    assert main(["policy", "check", str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:{line_of(text, 'pool: huge')}: error: models[3].pool")
    assert out[-1] == f"{path}: 1 error(s), 0 warning(s)"


def test_a_predicted_decision_whose_predictor_cannot_beat_one_model_is_a_warning(tmp_path):
    import numpy as np

    from pipeline.router.predictor import GuardPoint, SuccessPredictor

    models = ("wrp-small-8b", "wrp-large-70b")
    predictor = SuccessPredictor(
        "linear",
        models,
        np.zeros((3, 2)),
        np.zeros(2),
        np.tile([1.0, 0.0], (2, 1)),
        np.array([0.5, 0.6]),
        guard=(GuardPoint(0.0, 0.58, 0.6, "wrp-large-70b", 0.01),),
    )
    predictor.save(tmp_path / "predictor.npz")
    text = edited(
        "      strategy: cost_quality\n",
        "      strategy: predicted\n",
    )
    text = edited(
        "  cost_weight: 0.02\n",
        f"  cost_weight: 0.02\n  predictor: {{path: {tmp_path / 'predictor.npz'}}}\n",
        text,
    )
    findings = check_policy(write(tmp_path, text))
    assert [f.severity for f in findings] == ["warning", "warning"]  # the decision, and the
    assert {f.line for f in findings} == {line_of(text, "- name: casual")}  # thrifty tenant
    assert all(
        "did not beat always sending everything to wrp-large-70b" in f.message for f in findings
    )
    assert "for tenant 'thrifty'" in findings[1].message
    missing = text.replace(str(tmp_path / "predictor.npz"), str(tmp_path / "gone.npz"))
    (finding,) = check_policy(write(tmp_path, missing))
    assert finding.severity == "error" and "cannot read the success predictor" in finding.message


def test_a_negative_cost_weight_is_a_warning(tmp_path):
    text = edited("  cost_weight: 0.02\n", "  cost_weight: -0.5\n")
    (finding,) = check_policy(write(tmp_path, text))
    assert finding.severity == "warning" and finding.line == line_of(text, "cost_weight: -0.5")
    assert "prefers dearer models" in finding.message
