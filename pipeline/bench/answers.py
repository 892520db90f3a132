"""`wrp bench answers`: CPU time of screening an answer, whole and streamed, against screening off.

The answers are the ones ``wrp eval answers`` reads (eight Presidio eval rows each, ~700
characters with PII in most), screened by the policy's ``safety.answers``. Streamed answers arrive
as one chunk event per token (4 characters, as the simulator's) in reads of ``chunks_per_read``
events, the way the pool client hands them to the relay; "off" runs the same loop with the
chunks passed through. Moderation (off by default) is timed apart when the encoder is installed.
CPU time is this process's (``time.process_time``), best of ``repeat`` rounds.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from typing import Any

from pipeline.evaluation.answers_eval import CHUNK_CHARS, _answers, _completion
from pipeline.evaluation.pii_eval import EVAL_SHARE
from pipeline.evaluation.split import split_of
from pipeline.models.encoder import ModelNotFound, load_encoder
from pipeline.models.heads import HeadMissing, load_trained
from pipeline.policy import AnswerScreening, load_policy
from pipeline.safety.answers import AnswerModeration, StreamScreen, screen_response
from pipeline.settings import Settings, data_dir


def _events(text: str, per_read: int) -> list[list[dict[str, Any]]]:
    """The chunk events of a streamed ``text``, grouped as the relay receives them."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "m"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": {"content": text[i : i + CHUNK_CHARS]}}]}
        for i in range(0, len(text), CHUNK_CHARS)
    ]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [chunks[i : i + per_read] for i in range(0, len(chunks), per_read)]


def _best_cpu_ms(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best * 1000


def run_answers_bench(settings: Settings, per_read: int = 1, repeat: int = 5) -> dict:
    config: AnswerScreening = load_policy(settings.policy).safety.answers
    rows = json.loads((data_dir() / "pii" / "presidio_synth_dataset_v2.json").read_text("utf-8"))
    held_out = [r for r in rows if split_of(str(r["template_id"]), EVAL_SHARE) == "eval"]
    texts = [a["full_text"] for a in _answers(held_out)]
    completions = [_completion(t) for t in texts]
    streams = [_events(t, per_read) for t in texts]

    def whole_on() -> None:
        for completion in completions:
            screen_response(completion, None, config)

    def stream_off() -> None:
        for reads in streams:
            relayed: list[dict[str, Any]] = []
            for read in reads:
                relayed.extend(read)

    def stream_on() -> None:
        for reads in streams:
            screen = StreamScreen(config, None)
            relayed: list[dict[str, Any]] = []
            for read in reads:
                relayed.extend(screen.feed(read))
            relayed.extend(screen.finish())

    n = len(texts)
    report: dict[str, Any] = {
        "setup": {
            "answers": n,
            "mean_chars": round(sum(map(len, texts)) / n),
            "chunk_chars": CHUNK_CHARS,
            "chunks_per_read": per_read,
            "window_chars": config.window_chars,
            "repeat": repeat,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "cpu_ms_per_answer": {
            "whole_off": 0.0,
            "whole_on": round(_best_cpu_ms(whole_on, repeat) / n, 4),
            "streamed_off": round(_best_cpu_ms(stream_off, repeat) / n, 4),
            "streamed_on": round(_best_cpu_ms(stream_on, repeat) / n, 4),
        },
    }
    try:
        encoder = load_encoder(settings.model_dir, 1, settings.encoder_max_tokens, 1)
        head = load_trained("moderation", encoder.name, encoder.max_tokens)
    except (ModelNotFound, HeadMissing) as exc:
        report["moderation"] = f"not timed: {exc}"
        return report
    moderation = AnswerModeration(encoder, head)
    moderated = config.model_copy(update={"moderation": "flag"})

    def whole_moderated() -> None:
        for completion in completions:
            screen_response(completion, None, moderated, lambda t: moderation.categories(t, {}))

    report["cpu_ms_per_answer"]["whole_moderation_on"] = round(
        _best_cpu_ms(whole_moderated, 1) / n, 2
    )
    report["setup"]["encoder"] = f"{encoder.name}, 1 thread, {encoder.max_tokens} tokens"
    return report
