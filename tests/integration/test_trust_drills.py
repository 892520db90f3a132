"""The trust drills (``wrp drill``) at a smaller size on the test stack: hostile records each
accounted for, restarts that lose and double-count nothing and bring learning and the cache
back, and no raw PII at rest on any path."""

from __future__ import annotations

import pytest

from pipeline.drills.fuzz import fuzz_drill
from pipeline.drills.pii_at_rest import pii_drill
from pipeline.drills.restarts import restart_drill
from tests.integration.conftest import run

pytestmark = pytest.mark.integration


def test_fuzzed_records_are_each_answered_or_dead_lettered_and_counted_once(stack):
    report = run(fuzz_drill(stack, count=400, seed=14))
    assert report["lost"] == 0, report["lost_examples"]
    assert report["readable_dead_letters_without_error_reply"] == 0
    assert report["requests_topic_growth"] == 400  # nothing fed back into the pipeline
    assert report["stage_restarts"] == []
    assert report["stored_requests"] == report["answered_requests"]
    assert report["stored_requests_rolled_up"] == report["answered_requests"]
    assert report["stored_dead_letters"] == report["dead_letters_on_the_topic"]
    assert report["passed"]


def test_restarting_the_stack_loses_and_double_counts_nothing_and_forgets_nothing(stack):
    report = restart_drill(stack, restarts=3, per_round=12)
    assert report["lost"] == 0 and report["answered"] == 48
    assert report["stored"] == report["rolled_up"] == 48
    for restarted in report["rounds"][1:]:
        assert restarted["arms_before"] > 0 and restarted["cached_answers_before"] > 0
        assert restarted["arms_back_at_their_version"] == restarted["arms_before"]
        assert restarted["arms_whose_version_went_back"] == 0
        assert restarted["cached_answers_back"] == restarted["cached_answers_before"]
    assert report["passed"]


def test_no_raw_pii_reaches_clickhouse_logs_or_the_report_on_any_path(stack):
    report = pii_drill(stack)
    assert report["paths"] == {
        "redacted": "ok",
        "allowed": "ok",
        "blocked": "blocked",
        "error": "error",
        "truncated": "error",
        "schema": "error",
        "answer": "ok",
    }
    assert report["found_in_clickhouse"] == {}, report["found_in_clickhouse_around"]
    assert report["found_in_logs"] == {} and report["found_in_report"] == []
    assert report["passed"]
