"""The benchmarks of ``wrp eval routing``, each loaded as a :class:`Bench`: RouteLLM's recorded
strong/weak answers (MMLU, GSM8K), MT-Bench's graded turns and MMLU-Pro's 29 models at the prices
of ``routing_prices.yaml``, with the token counts their costs come from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.evaluation import datasets
from pipeline.evaluation.datasets import data_file
from pipeline.evaluation.routing_replay import Bench, Signaller, usd_per_1k
from pipeline.evaluation.split import split_of
from pipeline.evaluation.tasks import CHARS_PER_TOKEN
from pipeline.router.labelled import Labelled
from pipeline.settings import DataMissing

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
#: USD per 1M input/output tokens: OpenAI's list price of gpt-4-1106-preview (2023-2024) and
#: the serverless list price of Mixtral-8x7B-Instruct (Together, 2024).
ROUTELLM_PRICES = {WEAK: (0.6, 0.6), STRONG: (10.0, 30.0)}
PRICES_FILE = Path(__file__).with_name("routing_prices.yaml")
#: MMLU-Pro's 5-shot chain-of-thought prompt: five worked examples (question, ten options,
#: reasoning) before the question; estimated at this many tokens.
FEW_SHOT_TOKENS = 1500


def routellm(root: Path, name: str) -> pd.DataFrame:
    """RouteLLM's recorded answers on ``name`` (mmlu or gsm8k) without the contaminated prompts:
    both models' correctness as 1/0, and the ``split``."""
    base = "routing/routellm"
    if name == "mmlu":
        frame = pd.read_parquet(data_file(root, f"{base}/mmlu_responses.parquet"))
    else:
        frame = pd.read_csv(data_file(root, f"{base}/gsm8k_responses.csv"))
    lines = data_file(root, f"{base}/{name}_contaminated_prompts.jsonl").read_text().splitlines()
    contaminated = {json.loads(line)["eval_prompt"] for line in lines if line.strip()}
    frame = frame[~frame.prompt.isin(contaminated)].reset_index(drop=True)
    for model in (WEAK, STRONG):
        frame[model] = frame[model].astype(str).eq("True").astype(float)
    frame["split"] = [split_of(f"routellm-{name}:" + " ".join(p.split())) for p in frame.prompt]
    return frame


def mt_bench(root: Path) -> Labelled:
    """MT-Bench turns (the first and the follow-up question), each labelled with the GPT-4
    judge's 1-10 score / 10 for GPT-4 and Mixtral; contaminated prompts left out."""
    base = "routing/routellm"
    lines = data_file(root, f"{base}/mt_bench_question.jsonl").read_text().splitlines()
    questions = {q["question_id"]: q for q in map(json.loads, filter(str.strip, lines))}
    lines = data_file(root, f"{base}/mt_bench_contaminated_prompts.jsonl").read_text().splitlines()
    contaminated = {json.loads(line)["eval_prompt"].strip() for line in lines if line.strip()}
    scores: dict[tuple[int, int], dict[str, float]] = {}
    path = data_file(root, f"{base}/mt_bench_judgements_gpt4turbo_mixtral.jsonl")
    for line in filter(str.strip, path.read_text().splitlines()):
        judged = json.loads(line)
        if judged["model"] in ROUTELLM_PRICES and judged["score"] >= 0:
            key = (judged["question_id"], judged["turn"])
            scores.setdefault(key, {})[judged["model"]] = min(judged["score"], 10) / 10
    data = Labelled([], [], [], [])
    for (question, turn), labels in sorted(scores.items()):
        text = questions[question]["turns"][turn - 1]
        if text.strip() in contaminated:
            continue
        data.texts.append(text)
        data.labels.append(labels)
        data.costs.append({})
        data.tokens.append({})
    return data


def strong_weak_bench(root: Path, name: str, signaller: Signaller) -> tuple[Bench, pd.DataFrame]:
    """Prompt tokens as the signals count them; answers: MMLU's are one letter (its prompts end
    in "Answer:"), GSM8K's are the recorded responses at chars / 4."""
    frame = routellm(root, name)
    requests, signals, vectors = signaller.requests(f"routellm-{name}", list(frame.prompt))
    models = [WEAK, STRONG]
    prices = [ROUTELLM_PRICES[m] for m in models]
    prompt = np.array([s.prompt_tokens for s in signals], dtype=float)
    if name == "mmlu":
        output = np.ones((len(frame), len(models)))
    else:
        lengths = [frame[f"{m}_response"].fillna("").str.len() for m in models]
        output = np.stack(lengths, axis=1) / CHARS_PER_TOKEN
    bench = Bench(
        name,
        models,
        prices,
        requests,
        signals,
        vectors,
        frame[models].to_numpy(dtype=float),
        usd_per_1k(prompt, output, prices),
        (frame.split == "train").to_numpy(),
    )
    return bench, frame


def load_prices() -> tuple[dict[str, tuple[float, float]], dict[str, dict]]:
    """Price per model, and the tiers as stated in ``routing_prices.yaml``."""
    tiers = yaml.safe_load(PRICES_FILE.read_text())["tiers"]
    prices = {
        model: (tier["price"]["input_per_mtok"], tier["price"]["output_per_mtok"])
        for tier in tiers.values()
        for model in tier["models"]
    }
    return prices, tiers


def output_tokens(root: Path, frame: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, dict]:
    """Answer tokens per (row, model): the model's own answer length at chars / 4 where known
    (> 0), else the question's median over the models that have one, else the global median."""
    chars = pd.read_parquet(data_file(root, "routing/mmlu_pro/output_chars.parquet"))
    chars = frame[["question_id"]].merge(chars, on="question_id", how="left")
    tokens = chars[[f"{m}_5shots" for m in models]].to_numpy(dtype=float) / CHARS_PER_TOKEN
    tokens[~(tokens > 0)] = np.nan
    known = ~np.isnan(tokens)
    global_median = float(np.nanmedian(tokens))
    row_median = np.array(
        [np.median(t[k]) if k.any() else global_median for t, k in zip(tokens, known, strict=True)]
    )
    notes = {
        "prompt_tokens": f"len(question + options) / {CHARS_PER_TOKEN:g} + {FEW_SHOT_TOKENS} "
        "(the five worked examples of the 5-shot CoT prompt, estimated)",
        "output_tokens": f"the model's own answer length in chars / {CHARS_PER_TOKEN:g} where "
        "known (> 0), else the question's median over the models that have one, else the "
        "global median",
        "models_with_lengths": [m for m, k in zip(models, known.any(axis=0), strict=True) if k],
        "global_median_output_tokens": round(global_median, 1),
        "share_of_cells_with_own_length": round(float(known.mean()), 4),
    }
    return np.where(known, tokens, row_median[:, None]), notes


def mmlu_pro_bench(root: Path, signaller: Signaller) -> tuple[Bench, dict, dict]:
    """The MMLU-Pro bench, the token notes and the price tiers."""
    prices, tiers = load_prices()
    frame = datasets.mmlu_pro(root)
    models = [c.removesuffix("_5shots") for c in frame.columns if c.endswith("_5shots")]
    if sorted(models) != sorted(prices):
        raise DataMissing(
            f"MMLU-Pro correctness has models {sorted(models)} but {PRICES_FILE.name} prices "
            f"{sorted(prices)}: make them agree"
        )
    texts = [
        datasets.mmlu_prompt(q, list(o)) for q, o in zip(frame.question, frame.options, strict=True)
    ]
    requests, signals, vectors = signaller.requests("mmlu-pro", texts)
    prompt = np.array(
        [round(len(t) / CHARS_PER_TOKEN) + FEW_SHOT_TOKENS for t in texts], dtype=float
    )
    output, notes = output_tokens(root, frame, models)
    # the routed request is the 5-shot prompt: the router sees its size
    signals = [
        s.model_copy(update={"prompt_tokens": int(n)}) for s, n in zip(signals, prompt, strict=True)
    ]
    model_prices = [prices[m] for m in models]
    bench = Bench(
        "mmlu-pro",
        models,
        model_prices,
        requests,
        signals,
        vectors,
        frame[[f"{m}_5shots" for m in models]].to_numpy(dtype=float),
        usd_per_1k(prompt, output, model_prices),
        (frame.split == "train").to_numpy(),
        frame.src.str.split("-").str[0].to_numpy(),
    )
    return bench, notes, tiers
