"""Does a reward prefer better answers, and is it only length? (pure) The signal check's figures from each prompt's
candidates with their rewards, lengths and, where the prompt carries verifiable constraints, the checks' pass rate."""

from __future__ import annotations

from statistics import fmean
from typing import Sequence

from ..stats import spearman_rho


def best_random_worst(groups: Sequence[Sequence[tuple[float | None, float]]]) -> dict:
    """Over prompts, the mean pass rate of the candidate the reward ranks best, of a random candidate (the mean
    over the prompt's candidates) and of the one it ranks worst; `groups` holds (reward, pass rate) per candidate.
    Ties for best or worst are averaged (the reward cannot tell them apart)."""
    best, random_, worst = [], [], []
    for group in groups:
        scored = [(r, p) for r, p in group if r is not None]
        if len(scored) < 2:
            continue
        top, bottom = max(r for r, _ in scored), min(r for r, _ in scored)
        best.append(fmean(p for r, p in scored if r == top))
        worst.append(fmean(p for r, p in scored if r == bottom))
        random_.append(fmean(p for _, p in scored))
    round4 = lambda values: round(fmean(values), 4) if values else None  # noqa: E731
    return {"prompts": len(best), "best_of_n": round4(best), "random_of_n": round4(random_),
            "worst_of_n": round4(worst)}


def spread(groups: Sequence[Sequence[float | None]]) -> dict:
    """Ties (prompts whose candidates all share one reward: no pair) and the mean best-worst gap."""
    gaps, ties = [], 0
    for group in groups:
        values = [v for v in group if v is not None]
        if len(values) < 2:
            continue
        gap = max(values) - min(values)
        ties += gap == 0
        gaps.append(gap)
    return {"ties": ties, "tie_rate": round(ties / len(gaps), 4) if gaps else None,
            "mean_gap": round(fmean(gaps), 4) if gaps else None}


def length_spearman(rewards: Sequence[float | None], lengths: Sequence[float]) -> float | None:
    """Spearman's rho of reward with response length over every candidate with a reward."""
    both = [(r, n) for r, n in zip(rewards, lengths) if r is not None]
    if len(both) < 3:
        return None
    rho = spearman_rho([r for r, _ in both], [n for _, n in both])
    return None if rho is None else round(rho, 4)


def signal(groups: Sequence[Sequence[dict]]) -> dict:
    """All figures from groups of {"reward", "length", "pass" (None without constraints)} candidates."""
    flat = [c for g in groups for c in g]
    checked = [[(c["reward"], c["pass"]) for c in g] for g in groups if all(c.get("pass") is not None for c in g)]
    return {**spread([[c["reward"] for c in g] for g in groups]),
            "length_spearman": length_spearman([c["reward"] for c in flat], [c["length"] for c in flat]),
            **best_random_worst(checked)}
