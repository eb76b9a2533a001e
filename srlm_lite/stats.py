"""Evaluation statistics (pure): accuracy with ties, Wilson intervals, Spearman and Kendall tau-b, ranking figures."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def pair_credit(score_a: float | None, score_b: float | None, preferred: str) -> float:
    """1 when the judge's score order matches the label (`preferred` is "a" or "b"), 0 when it is reversed,
    0.5 for a tie; a pair with a missing score is a tie too (the judge expressed no preference)."""
    if preferred not in ("a", "b"):
        raise ValueError(f"preferred must be 'a' or 'b', got {preferred!r}")
    if score_a is None or score_b is None or score_a == score_b:
        return 0.5
    judge_prefers = "a" if score_a > score_b else "b"
    return 1.0 if judge_prefers == preferred else 0.0


def accuracy(credits: Sequence[float]) -> float | None:
    """Mean credit (1 right, 0.5 tie, 0 wrong); None for no items."""
    return sum(credits) / len(credits) if credits else None


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion successes / n (successes may be fractional: ties count half).

    Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n). None when n is 0.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denominator = 1 + z2 / n
    return max(0.0, (centre - half) / denominator), min(1.0, (centre + half) / denominator)


def proportion(credits: Sequence[float], z: float = Z_95) -> dict:
    """{"n", "accuracy", "ci_low", "ci_high"} of a list of credits (1 / 0.5 / 0), with its Wilson interval."""
    n = len(credits)
    interval = wilson_interval(sum(credits), n, z) if n else None
    return {
        "n": n,
        "accuracy": _round(accuracy(credits)),
        "ci_low": _round(interval[0]) if interval else None,
        "ci_high": _round(interval[1]) if interval else None,
    }


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values` (ascending), tied values sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = mean_rank
        start = end + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when fewer than 2 values or one side is constant."""
    _check_lengths(x, y)
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho with ties: the Pearson correlation of the average ranks (as scipy.stats.spearmanr)."""
    _check_lengths(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)) over all pairs, where
    ties_x counts pairs tied in x (including pairs tied in both); as scipy.stats.kendalltau. None if undefined."""
    _check_lengths(x, y)
    concordant = discordant = tied_x = tied_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
        if dx == 0:
            tied_x += 1
        if dy == 0:
            tied_y += 1
        if dx and dy:
            if dx == dy:
                concordant += 1
            else:
                discordant += 1
    n0 = len(x) * (len(x) - 1) // 2
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def ranking_metrics(groups: Sequence[tuple[Sequence[float | None], Sequence[float]]], perfect: float = 5.0) -> dict:
    """The paper's judge-vs-human figures over instructions with several ranked responses.

    Each group is (judge scores, human ranks) for one instruction's responses; a lower human rank is better
    (rank 0 or 1 = best, as in Open Assistant). A missing score (None) counts as the lowest score below all others.

    - pairwise_accuracy: over every response pair with different human ranks, how often the judge's score order
      agrees (ties in the judge's scores count half);
    - exact_match: share of instructions whose judge ordering equals the human ordering exactly (same strict
      order for every pair, ties included);
    - five_best: of the responses the judge scored a perfect `perfect` (rounded), the share humans ranked best;
      None when the judge gave no perfect score;
    - spearman, kendall_tau: correlations of judge score with human preference (= minus the rank), per
      instruction, averaged; an instruction where one side is constant counts as 0 (no agreement shown).
    """
    credits: list[float] = []
    exact = 0
    rhos: list[float] = []
    taus: list[float] = []
    perfect_total = perfect_best = 0
    for scores, ranks in groups:
        _check_lengths(scores, ranks)
        if len(scores) < 2:
            raise ValueError("a ranked group needs at least 2 responses")
        floor = min([s for s in scores if s is not None], default=0.0) - 1.0
        filled = [floor if s is None else float(s) for s in scores]
        preference = [-float(r) for r in ranks]
        same_order = True
        for i, j in combinations(range(len(filled)), 2):
            human, judge = _sign(preference[i] - preference[j]), _sign(filled[i] - filled[j])
            if human != judge:
                same_order = False
            if human:
                credits.append(0.5 if judge == 0 else float(judge == human))
        exact += same_order
        rhos.append(spearman_rho(filled, preference) or 0.0)
        taus.append(kendall_tau_b(filled, preference) or 0.0)
        best = min(ranks)
        for score, rank in zip(scores, ranks):
            if score is not None and round(score) >= perfect:
                perfect_total += 1
                perfect_best += rank == best
    n = len(groups)
    pairwise = proportion(credits)
    return {
        "instructions": n,
        "pairs": len(credits),
        "pairwise_accuracy": pairwise["accuracy"],
        "pairwise_ci_low": pairwise["ci_low"],
        "pairwise_ci_high": pairwise["ci_high"],
        "exact_match": _round(exact / n) if n else None,
        "five_best": _round(perfect_best / perfect_total) if perfect_total else None,
        "five_best_n": perfect_total,
        "spearman": _round(sum(rhos) / n) if n else None,
        "kendall_tau": _round(sum(taus) / n) if n else None,
    }


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _check_lengths(x: Sequence, y: Sequence) -> None:
    if len(x) != len(y):
        raise ValueError(f"length mismatch: {len(x)} vs {len(y)}")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def paired_difference(a: Sequence[float], b: Sequence[float], *, resamples: int = 10000, seed: int = 0,
                      z: float = Z_95) -> dict:
    """Mean of a_i - b_i over paired items (the same prompts scored for two models) and its 95% paired-bootstrap
    interval (items resampled with replacement, percentile interval). `n_better`/`n_worse`: items where a > b /
    a < b."""
    import numpy as np

    _check_lengths(a, b)
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return {"n": 0, "difference": None, "ci_low": None, "ci_high": None, "n_better": 0, "n_worse": 0}
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = diff[draws].mean(axis=1)
    tail = (1 - math.erf(z / math.sqrt(2))) / 2 * 100  # 2.5 for z = 1.96
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"n": n, "difference": _round(float(diff.mean())), "ci_low": _round(float(low)),
            "ci_high": _round(float(high)), "n_better": int((diff > 0).sum()), "n_worse": int((diff < 0).sum())}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """McNemar's exact test on paired pass/fail outcomes: `a_only` items pass for a only, `b_only` for b only; the
    two-sided p-value of the binomial test of a_only against a_only + b_only at 1/2."""
    _check_lengths(a, b)
    a_only = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    b_only = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    n = a_only + b_only
    if n == 0:
        return {"a_only": 0, "b_only": 0, "p_value": 1.0}
    tail = sum(math.comb(n, k) for k in range(0, min(a_only, b_only) + 1)) / 2 ** n
    return {"a_only": a_only, "b_only": b_only, "p_value": _round(min(1.0, 2 * tail))}


def consistency(scores_now: Sequence[float], scores_before: Sequence[float]) -> float:
    """CREAM's consistency of two rankings of the same candidates: Kendall's tau-b rescaled to [0, 1] (1 = the same
    order, 0 = reversed); 0.5 where tau is undefined (a constant ranking carries no order to agree with)."""
    tau = kendall_tau_b(scores_now, scores_before)
    return 0.5 if tau is None else (tau + 1.0) / 2.0
