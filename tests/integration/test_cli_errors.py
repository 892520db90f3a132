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
    assert f"cannot reach the Kafka broker at {broker}" in error and "WRP_BROKER" in error
    assert "Traceback" not in error


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
