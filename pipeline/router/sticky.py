"""Sticky sessions: a session's turn stays on the model that served its last turn unless the
reasons to switch outweigh the KV and prefix cache the switch throws away.

The previous model ``p`` holds the conversation so far in its prefix cache: ``K`` tokens (the
last turn's prompt plus its expected answer, at most this turn's prompt). Staying bills them at
the cached rate, switching re-prefills them at full price on the new model. The strategy's
scores already charge every candidate the full prompt, so what they miss is the cache discount
the session forfeits; in the strategy's utility units (quality points, lambda per USD of 1,000
requests, see ``strategies/base``):

    switch_cost = max(lambda, 0) * 1000 * K * price_in(p) * (1 - cached_input_share) + margin
    keep p  if  p is still a usable candidate
            and est(choice) - est(p) <= switch_cost
            and no outside reason forces the switch (``forced``: e.g. a budget downgrade)

``est`` is the strategy's best estimate of a candidate's utility without its exploration
(``Selection.estimates``: Thompson's posterior means, LinUCB without the confidence bonus);
strategies that score something else (static order, cascade costs) are weighed on the arm's
posterior-mean utility E[q] - lambda * c. Exploration therefore never moves a sticky session by
itself: a Thompson draw or an optimistic bonus that picks another model is held back, and
exploration happens on sessions' first turns and on sessionless requests. The margin covers
what the formula leaves out (re-prefill latency, the style change a user sees). A previous model
that is no longer a usable candidate (pool-aware routing skipped its saturated or failing pool,
the turn matched a decision without it, the window is too small) is a reason to switch, as is a
session idle longer than ``idle_s`` (its cache is likely gone).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.policy import ModelCard, StickyConfig


@dataclass(frozen=True)
class SessionTurn:
    """What a router instance remembers of a session's last routed turn."""

    model: str
    #: tokens the model holds for the session after that turn: its prompt plus expected answer
    cached_tokens: int
    #: monotonic seconds when it was routed
    at: float


@dataclass(frozen=True)
class Stickiness:
    """The model to serve and how the session's memory shaped it."""

    model: ModelCard
    #: the model of the session's previous turn, when the session is live (not idle)
    previous: str | None = None
    #: kept on the session's previous model over the strategy's choice
    sticky: bool = False
    #: the turn stays on the session's model (chosen or kept): exploration must not move it
    stays: bool = False

    @property
    def switched_from(self) -> str | None:
        """The session's previous model, when this turn moves it to another."""
        return self.previous if self.previous != self.model.name else None


def switch_cost(
    previous: ModelCard, cached_tokens: int, cost_weight: float, config: StickyConfig
) -> float:
    """Quality points a switch away from ``previous`` must win by."""
    forfeited = (
        cached_tokens * previous.price.input_per_mtok / 1e3 * (1 - config.cached_input_share)
    )
    return max(cost_weight, 0.0) * forfeited + config.margin


def hold(
    previous: SessionTurn | None,
    choice: ModelCard,
    candidates: list[ModelCard],
    estimates: dict[str, float],
    prompt_tokens: int,
    cost_weight: float,
    config: StickyConfig,
    now: float,
    forced: bool = False,
) -> Stickiness:
    """Keep the session on its previous model, or let ``choice`` (the strategy's) stand.
    ``estimates`` holds at least the utilities of ``choice`` and of the previous model. With
    stickiness off the previous model is still reported (switches are counted either way)."""
    if previous is None or now - previous.at > config.idle_s:
        return Stickiness(choice)
    if not config.enabled:
        return Stickiness(choice, previous.model)
    if previous.model == choice.name:
        return Stickiness(choice, previous.model, stays=True)
    kept = next((card for card in candidates if card.name == previous.model), None)
    if kept is None or forced:
        return Stickiness(choice, previous.model)
    advantage = estimates[choice.name] - estimates[kept.name]
    cached = min(previous.cached_tokens, prompt_tokens)
    if advantage > switch_cost(kept, cached, cost_weight, config):
        return Stickiness(choice, previous.model)
    return Stickiness(kept, previous.model, sticky=True, stays=True)
