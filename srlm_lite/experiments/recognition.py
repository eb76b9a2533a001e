"""Judging against generating (pure): on prompts whose answers pass or fail checks written in code (IFEval), how
often the model writes a passing answer, and how often its own judge tells a passing answer from a failing one.

Per prompt, the model's N candidates each pass or fail (IFEval loose, every instruction followed) and each has the
judge's score. Figures, every one a mean over prompts with a 95% interval (mean +- 1.96 standard errors):
- generate: the share of candidates that pass (= a random pick of the N, "random-of-N");
- best_of_n: the pass rate of the judge's favourite (its top-scored candidates, ties shared);
- oracle: the share of prompts where at least one candidate passes (the best any picker could do);
- recognise: on prompts with both a passing and a failing candidate, the share of (passing, failing) pairs the judge
  scores in the right order (ties and missing scores count half; chance 0.5); `longer_wins` is the same figure for
  "the longer answer is better", the baseline a length-loving judge reaches.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from ..stats import Z_95


def mean_interval(values: Sequence[float]) -> dict:
    """{"mean", "ci_low", "ci_high", "n"}: the mean and its normal 95% interval (None without two values)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": round(mean, 4), "ci_low": None, "ci_high": None, "n": n}
    half = Z_95 * statistics.stdev(values) / math.sqrt(n)
    return {"mean": round(mean, 4), "ci_low": round(mean - half, 4), "ci_high": round(mean + half, 4), "n": n}


def pick_share(scores: Sequence[float | None], passes: Sequence[bool]) -> float:
    """Pass rate of the judge's pick: the candidates with the top score share the pick (all share it when none
    was scored)."""
    scored = [s for s in scores if s is not None]
    if not scored:
        return statistics.fmean(map(float, passes))
    top = [p for s, p in zip(scores, passes) if s is not None and s == max(scored)]
    return statistics.fmean(map(float, top))


def pair_credits(values: Sequence[float | None], passes: Sequence[bool]) -> list[float]:
    """Over every (passing, failing) pair of one prompt: 1 when the passing one has the higher value, 0 when lower,
    0.5 on a tie or a missing value."""
    credits = []
    for i, good in enumerate(passes):
        for j, bad in enumerate(passes):
            if good and not bad:
                a, b = values[i], values[j]
                credits.append(0.5 if a is None or b is None or a == b else float(a > b))
    return credits


def judge_vs_generate(groups: Sequence[dict]) -> dict:
    """The figures above from one record per prompt: `passes` (bool per candidate), `scores` (the judge's, or None),
    `lengths` (characters)."""
    share = [statistics.fmean(map(float, g["passes"])) for g in groups]
    best = [pick_share(g["scores"], g["passes"]) for g in groups]
    mixed = [g for g in groups if any(g["passes"]) and not all(g["passes"])]
    recognise = [statistics.fmean(pair_credits(g["scores"], g["passes"])) for g in mixed]
    longer = [statistics.fmean(pair_credits(g["lengths"], g["passes"])) for g in mixed]
    pooled = [c for g in mixed for c in pair_credits(g["scores"], g["passes"])]
    return {
        "prompts": len(groups),
        "candidates": sum(len(g["passes"]) for g in groups),
        "mixed_prompts": len(mixed),
        "pairs": len(pooled),
        "generate": mean_interval(share),
        "best_of_n": mean_interval(best),
        "oracle": mean_interval([float(any(g["passes"])) for g in groups]),
        "best_minus_random": mean_interval([b - s for b, s in zip(best, share)]),
        "recognise": mean_interval(recognise),
        "recognise_pooled": round(statistics.fmean(pooled), 4) if pooled else None,
        "longer_wins": mean_interval(longer),
        "judge_minus_longer": mean_interval([r - x for r, x in zip(recognise, longer)]),
    }
