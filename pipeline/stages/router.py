"""router stage: wrp.screened -> decision + model (reading wrp.router-state) -> wrp.routed."""

from __future__ import annotations

import numpy as np

from pipeline.bus.catalog import ROUTED, ROUTER_STATE, SCREENED
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage, error_reply
from pipeline.bus.table import CompactedTable
from pipeline.envelope import Envelope, RouterState, now
from pipeline.policy import Policy, load_policy
from pipeline.router.route import RoutingError, route


class RouterStage(Stage):
    name = "router"
    topics = (SCREENED,)
    requires = ("signals", "safety")

    policy: Policy
    state: CompactedTable[RouterState]

    async def start(self) -> None:
        self.policy = load_policy(self.settings.policy)
        self.rng = np.random.default_rng()
        self.state = CompactedTable(self.settings.broker, ROUTER_STATE, RouterState)
        await self.state.start()

    async def stop(self) -> None:
        await self.state.stop()

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        started = now()
        outputs: list[Outbound | Rejected] = []
        for item in batch:
            env: Envelope = item.message  # type: ignore[assignment]
            try:
                decision = route(env, self.policy, self.state.values, self.rng)
            except RoutingError as exc:
                outputs.append(
                    error_reply(
                        env.advance(self.name, started), self.name, exc.error_type, str(exc)
                    )
                )
                continue
            outputs.append(
                Outbound(ROUTED, env.key, env.advance(self.name, started, decision=decision))
            )
        return outputs
