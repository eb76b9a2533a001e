"""`eval h2h`: two iterations' models answer the same prompts; a judge compares each pair of answers.

The judge is the run's own: with the rubric judges (`expected`, `forced`, `sampled`) it scores both answers and
the higher score wins (equal scores tie); with `pairwise` it compares the two in both orders (a tie when the orders
disagree). On SmolLM2-135M the pairwise letter judge says "A" whatever it is shown, so every pair ties; the
`expected` rubric judge measured best on labelled pairs (README, "A judge with signal") and is the default."""

from __future__ import annotations

import time
from typing import Callable

from ..config import JudgeConfig
from ..engines.base import Engine
from ..judging import compare as judge_compare
from ..seeds import derive_seed
from ..stats import wilson_interval

Progress = Callable[[str, int, int], None]


def generate(engine: Engine, prompts: list[dict], *, max_tokens: int, temperature: float, top_p: float, seed: int,
             stage: str, progress: Progress | None = None) -> list[dict]:
    """One answer per prompt; the seed depends on the prompt only, so both sides sample with the same seeds."""
    answers = []
    for done, item in enumerate(prompts, 1):
        out = engine.complete(engine.chat_prompt(item["prompt"]), max_tokens=max_tokens, temperature=temperature,
                              top_p=top_p, seed=derive_seed(seed, "h2h", item["id"]))
        answers.append({"text": out.text, "n_tokens": out.n_tokens, "finish_reason": out.finish_reason})
        if progress:
            progress(stage, done, len(prompts))
    return answers


def compare(judge: Engine, config: JudgeConfig, instruction: str, a: str, b: str, seed: int, key: str) -> dict:
    """One verdict on answers a and b in the run's judging format: {"outcome": win/tie/loss for a, ...}."""
    return judge_compare(judge, config, instruction, a, b,
                         lambda side: [derive_seed(seed, "h2h-judge", key, side, j) for j in range(config.judge_samples)])


def head_to_head(engine_a: Engine, engine_b: Engine, judge: Engine, prompts: list[dict], *, max_tokens: int = 128,
                 temperature: float = 0.7, top_p: float = 0.9, seed: int = 0, judge_config: JudgeConfig | None = None,
                 progress: Progress | None = None) -> dict:
    """Wins/ties/losses of A against B, A's win rate (ties half) with a Wilson interval, and each side's answer
    length beside it (a judge that favours length shows here). `judge_config`: the judge's mode and settings
    (default: the `expected` rubric judge)."""
    judge_config = judge_config or JudgeConfig(mode="expected")
    started = time.perf_counter()
    answers_a = generate(engine_a, prompts, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                         stage="answers A", progress=progress)
    answers_b = generate(engine_b, prompts, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                         stage="answers B", progress=progress)
    items = []
    for done, (item, a, b) in enumerate(zip(prompts, answers_a, answers_b), 1):
        verdict = compare(judge, judge_config, item["prompt"], a["text"], b["text"], seed, item["id"])
        items.append({"id": item["id"], **verdict, "answer_a": a["text"], "answer_b": b["text"],
                      "tokens_a": a["n_tokens"], "tokens_b": b["n_tokens"]})
        if progress:
            progress("judge pairs", done, len(prompts))
    summary = summarize(items)
    summary["judge_mode"] = judge_config.mode
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["items"] = items
    return summary


def summarize(items: list[dict]) -> dict:
    """Outcome counts, win rate of A (ties count half) with its Wilson interval, lengths of both sides; the
    pairwise judge's position figures, or the rubric judge's mean scores (pure)."""
    n = len(items)
    wins = sum(i["outcome"] == "win" for i in items)
    ties = sum(i["outcome"] == "tie" for i in items)
    losses = n - wins - ties
    interval = wilson_interval(wins + ties / 2, n) if n else None
    decisive = [i for i in items if i["outcome"] != "tie" and len(i["answer_a"]) != len(i["answer_b"])]
    longer_won = sum((i["outcome"] == "win") == (len(i["answer_a"]) > len(i["answer_b"])) for i in decisive)
    orders = [o for i in items for o in i.get("orders", []) if o["choice"] is not None]
    pairwise = bool(items) and all("p_a" in i for i in items)
    return {
        "n": n,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_rate": round((wins + ties / 2) / n, 4) if n else None,
        "ci_low": round(interval[0], 4) if interval else None,
        "ci_high": round(interval[1], 4) if interval else None,
        "position_consistency": round((wins + losses) / n, 4) if n and pairwise else None,
        "first_position_rate": round(sum(o["choice"] == "first" for o in orders) / len(orders), 4) if orders else None,
        "mean_chars_a": _mean([len(i["answer_a"]) for i in items]),
        "mean_chars_b": _mean([len(i["answer_b"]) for i in items]),
        "mean_tokens_a": _mean([i["tokens_a"] for i in items]),
        "mean_tokens_b": _mean([i["tokens_b"] for i in items]),
        "longer_answer_won": round(longer_won / len(decisive), 4) if decisive else None,
        # P(A better) averaged over both orders: a position-debiased reading when the orders mostly disagree
        "mean_p_a": round(sum(i["p_a"] for i in items) / n, 4) if pairwise else None,
        "debiased_wins": sum(i["p_a"] > 0.5 for i in items) if pairwise else None,
        "debiased_losses": sum(i["p_a"] < 0.5 for i in items) if pairwise else None,
        "mean_score_a": _mean_score([i.get("score_a") for i in items]),
        "mean_score_b": _mean_score([i.get("score_b") for i in items]),
    }


def _mean_score(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None
