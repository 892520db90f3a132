"""`wrp eval signals|safety` and `wrp models train`: wiring of data, encoder cache and heads."""

from __future__ import annotations

import os

from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.head_training import evaluate, train
from pipeline.evaluation.pii_eval import evaluate_pii
from pipeline.evaluation.safety_eval import evaluate_decision
from pipeline.evaluation.tasks import TASKS
from pipeline.models.encoder import load_encoder
from pipeline.models.heads import load_trained
from pipeline.policy import load_policy
from pipeline.settings import Settings, data_dir

SIGNAL_HEADS = ("domain", "complexity")
SAFETY_HEADS = ("safety", "moderation")


def _cache(settings: Settings) -> EmbeddingCache:
    threads = settings.encoder_threads if "WRP_ENCODER_THREADS" in os.environ else os.cpu_count()
    encoder = load_encoder(
        settings.model_dir, threads or 1, settings.encoder_max_tokens, settings.encoder_batch
    )
    return EmbeddingCache(encoder, settings.state_dir / "cache")


def train_heads(settings: Settings, names: list[str]) -> None:
    root = data_dir()
    cache = _cache(settings)
    for name in names:
        train(name, root, cache)


def evaluate_heads(settings: Settings, names: tuple[str, ...]) -> dict:
    root = data_dir()
    cache = _cache(settings)
    report = {}
    for name in names:
        task = TASKS[name](root)
        head = load_trained(name, cache.encoder.name, cache.encoder.max_tokens)
        report[name] = {
            "model": head.version,
            **evaluate(head, task, cache.embed(task.texts, name)),
        }
    return report


def eval_signals(settings: Settings) -> dict:
    return evaluate_heads(settings, SIGNAL_HEADS)


def eval_safety(settings: Settings) -> dict:
    """The heads alone (as their model cards report them), then the shipped decision end to end
    (the screener with the configured policy) with leave-one-family-out recall, then PII."""
    cache = _cache(settings)
    report = evaluate_heads(settings, SAFETY_HEADS)
    report["decision"] = evaluate_decision(load_policy(settings.policy), cache)
    report["pii"] = evaluate_pii(data_dir() / "pii" / "presidio_synth_dataset_v2.json")
    return report


def _metric_table(what: str, metrics: dict[str, dict]) -> list[str]:
    """Precision / recall / F1 / support per label, as aligned lines."""
    header = [what, "precision", "recall", "f1", "support"]
    rows = [
        [k, *("-" if m[c] is None else m[c] for c in ("precision", "recall", "f1")), m["support"]]
        for k, m in metrics.items()
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
        for r in [header, *rows]
    ]


def _decision_lines(section: dict) -> list[str]:
    """The shipped decision: per source, blocked and noticed; unseen families; retries; AUROC."""
    lines = []
    for kind in ("attacks", "benign"):
        for source, m in section[kind].items():
            lines.append(
                f"  {kind:<8} {source:<28} rows {m['rows']:>5}  blocked {m['blocked']:.3f}  "
                f"any action {m['noticed']:.3f}"
            )
    for source, m in section["unseen_family"].items():
        lines.append(
            f"  family unseen in training: {source:<28} ({m['family']})  blocked "
            f"{m['blocked']:.3f}  any action {m['noticed']:.3f}"
        )
    for source, m in section["benign_retry"].items():
        lines.append(
            f"  benign sent twice in a session: {source:<24} second send newly blocked "
            f"{m['second_send_newly_blocked']}/{m['rows']}"
        )
    if "indirect_injection_auroc" in section:
        m = section["indirect_injection_auroc"]
        lines.append(
            f"  indirect injection in tool results: AUROC {m['auroc']:.3f} "
            f"({m['planted']} planted vs {m['clean']} clean)"
        )
    return lines


def render(report: dict) -> str:
    """The report as plain-text tables (the JSON form has every number)."""
    lines: list[str] = []
    for name, section in report.items():
        lines.append(f"== {name} ({section.get('model', 'regex')})")
        if "accuracy" in section:
            lines.append(
                f"eval rows {section['rows']}: accuracy {section['accuracy']:.3f}, "
                f"macro-F1 {section['macro_f1']:.3f}"
            )
            for label, m in section.get("by_predicted_class", {}).items():
                lines.append(
                    f"  predicted {label:<7} rows {m['rows']:>5}  strong-model acc "
                    f"{m['strong_models_accuracy']}  weak-model acc {m['weak_models_accuracy']}"
                )
        if "attack_recall" in section:
            lines.append(f"thresholds {section['thresholds']}")
            for key, title in (("attack_recall", "recall"), ("benign_fpr", "false-positive rate")):
                for source, m in section[key].items():
                    own = f"  as own class {m['as_own_class']:.3f}" if "as_own_class" in m else ""
                    lines.append(
                        f"  {title:<20} {source:<16} {m['rate']:.3f}  "
                        f"({m['flagged']}/{m['rows']}){own}"
                    )
        if "unseen_family" in section:
            lines += _decision_lines(section)
        for source, m in section.get("benign_flag_rate", {}).items():
            lines.append(f"  flagged on benign   {source:<16} {m['rate']:.3f}  ({m['rows']} rows)")
        if "categories" in section:
            lines.append(f"thresholds {section['thresholds']}, eval rows {section['rows']}")
            lines += _metric_table("category", section["categories"])
        if "entities" in section:
            lines.append(f"split {section.get('split')}, rows {section.get('rows')}")
            lines += _metric_table("entity", section["entities"])
            if "all_rows" in section:
                lines.append(f"all {section['all_rows']['rows']} rows (include the rows tuned on)")
                lines += _metric_table("entity", section["all_rows"]["entities"])
    return "\n".join(lines)
