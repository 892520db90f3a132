"""A circuit breaker per endpoint: stop sending to an endpoint that keeps failing.

Closed: requests flow; ``failures`` consecutive failures open it. Open: the endpoint is skipped
for ``open_s``. Half-open: then exactly one probe request goes through; its success closes the
circuit, its failure opens it for another ``open_s``. State is per dispatch process (each instance
learns an endpoint is down from its own calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.open_s = open_s
        self.clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> CircuitState:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.open_s else "half_open"

    def allows(self) -> bool:
        """Whether a request may be sent now (in half-open, only while no probe is out)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self.probing)

    def on_send(self) -> None:
        if self.state == "half_open":
            self.probing = True

    def on_success(self) -> None:
        self.consecutive_failures, self.opened_at, self.probing = 0, None, False

    def on_failure(self) -> None:
        self.consecutive_failures += 1
        if self.probing or self.consecutive_failures >= self.threshold:
            self.opened_at = self.clock()
        self.probing = False
