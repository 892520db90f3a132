from pipeline.envelope import Feedback, Outcome
from pipeline.learn.evidence import Served, credit_feedback, credit_outcome, fold
from pipeline.policy import Price
from pipeline.pool.endpoints import LeastOutstanding


def outcome(status: str) -> Outcome:
    return Outcome(
        request_id="r",
        decision="d",
        model="m",
        pool="p",
        endpoint="e",
        status=status,
        attempts=1,
        latency_ms=1,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=0,
        dispatched_at=0,
        completed_at=0,
    )


def test_feedback_credits_the_arm_that_served_the_request():
    credit = credit_feedback(Feedback(request_id="r", score=0.75), Served("d", "m"))
    state = fold(None, credit)
    assert (state.decision, state.model) == ("d", "m")
    assert (state.successes, state.failures, state.observations) == (0.75, 0.25, 1)
    state = fold(state, credit_feedback(Feedback(request_id="r", score=0.0), Served("d", "m")))
    assert (state.successes, state.failures, state.observations) == (0.75, 1.25, 2)


def test_failed_outcomes_count_as_failures_and_served_ones_wait_for_feedback():
    assert credit_outcome(outcome("ok")) is None
    credit = credit_outcome(outcome("error"))
    assert credit is not None and (credit.successes, credit.failures) == (0.0, 1.0)


def test_least_outstanding_spreads_load_and_avoids_tried_endpoints():
    balancer = LeastOutstanding()
    urls = ["a", "b"]
    first = balancer.select_endpoint(urls)
    balancer.acquire(first)
    second = balancer.select_endpoint(urls)
    assert second != first
    balancer.acquire(second)
    balancer.release(first)
    assert balancer.select_endpoint(urls) == first
    assert balancer.select_endpoint(urls, exclude={first}) == second


def test_price_per_million_tokens():
    assert Price(input_per_mtok=1.0, output_per_mtok=2.0).cost(1_000_000, 500_000) == 2.0
