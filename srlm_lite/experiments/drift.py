"""Drift measures (pure): how far M_k has moved from M0, and whether its answers collapse or repeat.

- KL(M_k || M0) = E_{y ~ M_k}[log M_k(y) - log M0(y)], estimated from answers sampled from M_k (temperature 1, no
  top-p: the model's own distribution) as the mean of the per-answer log-ratio, with its standard error;
- distinct-2 and repetition (seq-rep-4 averaged over answers): `text_stats.py`;
- mean answer length in tokens and the share of answers cut at the token limit.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from ..text_stats import distinct_n, repetition


def kl_estimate(logps_policy: Sequence[float], logps_base: Sequence[float]) -> dict:
    """Monte Carlo KL(policy || base) from samples of the policy: the mean of log p_policy(y) - log p_base(y) over
    the samples y, its standard error (sample standard deviation / sqrt(n)), and n."""
    if len(logps_policy) != len(logps_base):
        raise ValueError(f"{len(logps_policy)} policy log-probs but {len(logps_base)} base log-probs")
    ratios = [p - b for p, b in zip(logps_policy, logps_base)]
    n = len(ratios)
    if n == 0:
        return {"kl": None, "se": None, "n": 0}
    se = statistics.stdev(ratios) / math.sqrt(n) if n > 1 else None
    return {"kl": statistics.fmean(ratios), "se": se, "n": n}


def answer_stats(samples: Sequence[dict]) -> dict:
    """Diversity, repetition and length of a model's sampled answers (`response`, `n_tokens`, `finish_reason`)."""
    texts = [s["response"] for s in samples]
    n = len(samples)
    return {
        "answers": n,
        "distinct_2": _round(distinct_n(texts, 2)),
        "repetition": _round(repetition(texts, 4)),
        "mean_tokens": _round(statistics.fmean(s["n_tokens"] for s in samples), 1) if n else None,
        "mean_chars": _round(statistics.fmean(len(t) for t in texts), 1) if n else None,
        "at_limit": _round(sum(s["finish_reason"] == "length" for s in samples) / n) if n else None,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
