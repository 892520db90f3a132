"""The ``wrp`` command line: help for every option, an example in every subcommand's help,
``publish --tenant``, positional ids, and values printed as people read them."""

from __future__ import annotations

import argparse

import pytest

from pipeline import cli, client
from pipeline.analytics.render import cell_text, render
from pipeline.analytics.report import table


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_the_help_ends_with_an_example(name):
    parser = subcommands()[name]
    undocumented = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"wrp {name}: no help for {undocumented}"
    text = parser.format_help()
    example = text.rsplit("example:\n", 1)[-1]
    assert "example:\n" in text and example.lstrip().startswith(f"wrp {name}"), text


def test_examples_keep_their_lines():
    text = subcommands()["publish"].format_help()
    assert (
        '\n  echo \'{"messages":[{"role":"user","content":"hi"}]}\' | wrp publish --stream' in text
    )


def test_publish_sends_the_request_for_the_tenant_named(monkeypatch, capsys):
    sent = []

    async def replay(broker, requests, *args, **kwargs):
        sent.extend(requests)
        return {}

    monkeypatch.setattr(client, "replay", replay)
    argv = ["publish", "hi", "--tenant", "acme", "--session", "s1", "--timeout", "1"]
    assert cli.main(argv) == 1  # nothing answered
    assert [(r.tenant, r.session_id) for r in sent] == [("acme", "s1")]
    assert cli.main(["publish", "hi", "--timeout", "1"]) == 1
    assert sent[-1].tenant == "default"
    assert "no response for" in capsys.readouterr().err


def test_publish_refuses_a_bad_tenant_or_body_in_one_line(monkeypatch, capsys):
    assert cli.main(["publish", "hi", "--tenant", "a/b"]) == 2
    monkeypatch.setattr("sys.stdin.read", lambda: "not json")
    assert cli.main(["publish"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(e.startswith("error: wrp publish: ") for e in errors)
    assert "tenant" in errors[0] and "not an OpenAI request body" in errors[1]


def test_ids_are_positional_as_the_readme_shows():
    parser = cli.build_parser()
    assert parser.parse_args(["analytics", "request", "abc123"]).request_id == "abc123"
    feedback = parser.parse_args(["feedback", "abc123", "up"])
    assert (feedback.request_id, feedback.judgement) == ("abc123", "up")


def test_the_request_query_without_an_id_says_how_to_give_it(capsys):
    assert cli.main(["analytics", "request"]) == 2
    assert capsys.readouterr().err == (
        "error: wrp analytics request: give the request's id: wrp analytics request ID\n"
    )


def test_lists_print_as_people_read_them():
    assert cell_text(["a", "b"]) == "a, b"
    assert cell_text([("m1", 3), ("m2", 0.5)]) == "m1 3, m2 0.5"
    assert cell_text(None) == "-" and cell_text(1.0 / 3) == "0.333333"
    result = {"columns": ["decision", "top_models"], "rows": [["code", ["big", "small"]]]}
    assert "['" not in render(result, "table") and "big, small" in render(result, "table")
    assert render(result, "csv").splitlines()[1] == 'code,"big, small"'
    assert "<td>big, small</td>" in table(result)
