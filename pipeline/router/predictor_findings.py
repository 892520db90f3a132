"""What `wrp policy check` says about the success predictor decisions of strategy ``predicted``
read (:mod:`pipeline.router.predictor`)."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from pipeline.policy import Policy
from pipeline.policy.check import Finding, decision_paths, locate
from pipeline.router.predictor import load_predictor


def predictor_findings(policy: Policy, root: yaml.Node) -> Iterator[Finding]:
    """Decisions of strategy ``predicted``: a predictor to read, that knows the candidates and
    that beat always-one-model on its validation rows at the decision's cost weight."""
    paths = decision_paths(policy)
    router = policy.router
    specs = [s for s in [*router.decisions, router.default] if s.strategy == "predicted"]
    if not specs:
        return
    if router.predictor.path is None:
        for spec in specs:
            yield Finding(
                "warning",
                locate(root, f"{paths[id(spec)]}.strategy"),
                f"decision {spec.name!r} uses strategy predicted but router.predictor.path is "
                "not set: it routes on the cards' priors; train one with `wrp router train`",
            )
        return
    try:
        predictor = load_predictor(router.predictor.path)
    except (OSError, KeyError, ValueError) as exc:
        yield Finding(
            "error",
            locate(root, "router.predictor.path"),
            f"cannot read the success predictor {router.predictor.path}: {exc}",
        )
        return
    for spec in specs:
        where = locate(root, paths[id(spec)])
        unknown = [m for m in spec.models if m not in predictor.models]
        if unknown:
            yield Finding(
                "warning",
                where,
                f"the success predictor has no estimate for {', '.join(unknown)} of decision "
                f"{spec.name!r}: they are scored by the kNN index or the card's prior",
            )
        if not predictor.guard:
            yield Finding(
                "warning",
                where,
                f"decision {spec.name!r}: the success predictor has no held-out comparison with "
                "always sending everything to one model (too few requests labelled for every "
                "model), so nothing stops it routing worse than one model; label some requests "
                "for every candidate and retrain",
            )
            continue
        default = spec.cost_weight if spec.cost_weight is not None else router.cost_weight
        weights = {"": default} | {
            f" for tenant {name!r}": t.cost_weight
            for name, t in router.tenants.items()
            if t.cost_weight is not None
        }
        for who, weight in weights.items():
            point = predictor.guard_at(weight)
            if point is not None and not point.beats:
                yield Finding(
                    "warning",
                    where,
                    f"decision {spec.name!r}{who}: on its validation rows the success predictor "
                    f"did not beat always sending everything to {point.model} at cost weight "
                    f"{weight:g}, so the decision routes like {point.model}; label more requests "
                    "and retrain, or use strategy static",
                )
