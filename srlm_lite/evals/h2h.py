"""`eval h2h`: two iterations' models answer the same prompts; a pairwise judge compares each pair in both orders."""

from __future__ import annotations

import time
from typing import Callable

from ..engines.base import Engine
from ..runs import derive_seed
from ..stats import wilson_interval
from ..pairwise import compare_both_orders

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


def head_to_head(engine_a: Engine, engine_b: Engine, judge: Engine, prompts: list[dict], *, max_tokens: int = 128,
                 temperature: float = 0.7, top_p: float = 0.9, seed: int = 0, min_mass: float = 0.5,
                 progress: Progress | None = None) -> dict:
    """Wins/ties/losses of A against B (a tie when the judge's two orders disagree), A's win rate (ties half)
    with a Wilson interval, and each side's answer length beside it (a judge that favours length shows here)."""
    started = time.perf_counter()
    answers_a = generate(engine_a, prompts, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                         stage="answers A", progress=progress)
    answers_b = generate(engine_b, prompts, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                         stage="answers B", progress=progress)
    items = []
    for done, (item, a, b) in enumerate(zip(prompts, answers_a, answers_b), 1):
        verdict = compare_both_orders(judge, item["prompt"], a["text"], b["text"], min_mass)
        outcome = {"x": "win", "y": "loss"}.get(verdict["winner"], "tie")
        items.append({"id": item["id"], "outcome": outcome, "p_a": verdict["p_x"], "orders": verdict["orders"],
                      "answer_a": a["text"], "answer_b": b["text"], "tokens_a": a["n_tokens"],
                      "tokens_b": b["n_tokens"]})
        if progress:
            progress("judge pairs", done, len(prompts))
    summary = summarize(items)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["items"] = items
    return summary


def summarize(items: list[dict]) -> dict:
    """Outcome counts, win rate of A (ties count half) with its Wilson interval, lengths of both sides (pure)."""
    n = len(items)
    wins = sum(i["outcome"] == "win" for i in items)
    ties = sum(i["outcome"] == "tie" for i in items)
    losses = n - wins - ties
    interval = wilson_interval(wins + ties / 2, n) if n else None
    decisive = [i for i in items if i["outcome"] != "tie" and len(i["answer_a"]) != len(i["answer_b"])]
    longer_won = sum((i["outcome"] == "win") == (len(i["answer_a"]) > len(i["answer_b"])) for i in decisive)
    orders = [o for i in items for o in i["orders"] if o["choice"] is not None]
    return {
        "n": n,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_rate": round((wins + ties / 2) / n, 4) if n else None,
        "ci_low": round(interval[0], 4) if interval else None,
        "ci_high": round(interval[1], 4) if interval else None,
        "position_consistency": round((wins + losses) / n, 4) if n else None,
        "first_position_rate": round(sum(o["choice"] == "first" for o in orders) / len(orders), 4) if orders else None,
        "mean_chars_a": _mean([len(i["answer_a"]) for i in items]),
        "mean_chars_b": _mean([len(i["answer_b"]) for i in items]),
        "mean_tokens_a": _mean([i["tokens_a"] for i in items]),
        "mean_tokens_b": _mean([i["tokens_b"] for i in items]),
        "longer_answer_won": round(longer_won / len(decisive), 4) if decisive else None,
        # P(A better) averaged over both orders: a position-debiased reading when the orders mostly disagree
        "mean_p_a": round(sum(i["p_a"] for i in items) / n, 4) if n else None,
        "debiased_wins": sum(i["p_a"] > 0.5 for i in items),
        "debiased_losses": sum(i["p_a"] < 0.5 for i in items),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None
