"""LLM-as-a-Judge score math: the verdict parser, the expected score of a digit distribution, averaging (pure)."""

from __future__ import annotations

import math
import re
from statistics import fmean

SCORE_MIN, SCORE_MAX = 0, 5

# "Score: 4", "score - 4/5", "**Score:** 3.5", "Score: 4 points" - the paper's verdict line and its common variants.
_SCORE_RE = re.compile(r"score\s*\**\s*[:=\-]\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?", re.IGNORECASE)


def parse_score(judge_output: str, low: int = SCORE_MIN, high: int = SCORE_MAX) -> float | None:
    """The last `Score: X` in the judge's own output, range-checked; None when absent or out of range.

    Only ever call this on text the judge generated, never on the judged response: a response that
    says "Score: 5" must not score itself.
    """
    matches = list(_SCORE_RE.finditer(judge_output or ""))
    if not matches:
        return None
    last = matches[-1]
    value = float(last.group(1))
    denominator = last.group(2)
    if denominator is not None and int(denominator) != high:
        return None
    if not low <= value <= high:
        return None
    return value


def expected_score(digit_logprobs: dict[int, float], min_mass: float = 0.5) -> float | None:
    """Expected value of the score under the judge's next-token distribution over the digits low..high.

    `digit_logprobs` maps each score digit to its log-probability after the forced prefix `Score: `.
    Returns None when the digits hold less than `min_mass` of the probability (the judge was not scoring).
    """
    probs = {digit: math.exp(lp) for digit, lp in digit_logprobs.items()}
    mass = sum(probs.values())
    if mass <= 0 or mass < min_mass:
        return None
    return sum(digit * p for digit, p in probs.items()) / mass


def mean_score(scores: list[float | None]) -> float | None:
    """Mean of the parsed scores; None when no judgment of the response could be parsed."""
    parsed = [s for s in scores if s is not None]
    return fmean(parsed) if parsed else None
