"""Selection strategies, one module each; ``STRATEGIES`` maps a policy's strategy name to it."""

from collections.abc import Callable

from pipeline.router.strategies import (
    cascade,
    contextual,
    cost_quality,
    knn,
    predicted,
    static,
    thompson,
)
from pipeline.router.strategies.base import Selection, SelectionContext

STRATEGIES: dict[str, Callable[[SelectionContext], Selection]] = {
    "static": static.select,
    "cost_quality": cost_quality.select,
    "knn": knn.select,
    "predicted": predicted.select,
    "thompson": thompson.select,
    "contextual": contextual.select,
    "cascade": cascade.select,
}
