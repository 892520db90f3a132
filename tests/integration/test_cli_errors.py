"""Mistakes a new user makes get a message that says the fix, never a traceback."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.stack import Stack, StackError
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_an_unreachable_broker_is_named_with_the_setting_to_fix(capsys):
    broker = f"127.0.0.1:{free_port()}"
    assert main(["publish", "hello", "--broker", broker, "--timeout", "5"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot reach the Kafka broker at {broker}")
    assert "WRP_BROKER" in error and error.count("\n") == 1 and "[(" not in error


def test_an_invalid_or_missing_policy_is_one_line(tmp_path, capsys):
    bad = tmp_path / "policy.yaml"
    bad.write_text("models: [\n")
    assert main(["sim", "--policy", str(bad)]) == 2
    assert main(["sim", "--policy", str(tmp_path / "none.yaml")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith(f"error: {bad}: invalid policy: line ")
    assert (
        errors[1] == f"error: {tmp_path / 'none.yaml'}: invalid policy: cannot read the file: "
        "No such file or directory"
    )
    assert len(errors) == 2


def test_a_missing_file_is_named_in_one_line(tmp_path, capsys):
    broker = f"127.0.0.1:{free_port()}"
    assert main(["replay", str(tmp_path / "none.jsonl"), "--broker", broker]) == 2
    assert capsys.readouterr().err == (
        f"error: No such file or directory: {tmp_path / 'none.jsonl'}\n"
    )


def test_an_unknown_request_id_is_an_error(stack, monkeypatch, capsys):
    monkeypatch.setenv("WRP_METRICS_PORT_BASE", str(stack.settings.metrics_port_base))
    monkeypatch.setenv("WRP_STATE_DIR", str(stack.settings.state_dir))
    assert main(["analytics", "request", "no-such-request"]) == 1
    assert capsys.readouterr().err == "error: no request no-such-request in analytics\n"


def test_a_stage_whose_port_is_taken_says_so(stack, capsys):
    taken = stack.settings.stage_port("router")
    assert main(["stage", "router", "--broker", stack.settings.broker, "--port", str(taken)]) == 2
    assert f"port {taken}" in capsys.readouterr().err


def test_a_second_stack_on_the_same_ports_names_every_port_in_use(stack):
    second = Stack(stack.settings, broker_port=stack.broker_port)
    with pytest.raises(StackError, match="Another `wrp up` is probably running") as refused:
        second.start()
    message = str(refused.value)
    assert f"{stack.broker_port} for the broker" in message
    assert f"{stack.settings.gateway_port} for the gateway" in message
    assert not second.processes and second.broker is None
