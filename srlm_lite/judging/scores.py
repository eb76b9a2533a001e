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


SCORE_REMOVED = "[a score the text gave itself was removed]"
_NUMBER = r"(?:\d+(?:\.\d+)?|zero|one|two|three|four|five)"
_AWARD = r"(?:give|gives|given|giving|award|awards|awarded|deserves?|earns?|earned|merits?|worth|rate|rates|rated)"
# A rating the judged text gives itself: what the parser reads (Score: 4), a rating word with a number (Rating: 5/5),
# a number on the rubric's scale (5/5, 4 out of 5), or points awarded (earns all five points, give it 5 points).
SELF_VERDICTS = (
    _SCORE_RE,
    re.compile(rf"\b(?:rating|rated|grade|graded|mark|points)\s*\**\s*[:=\-]\s*\**\s*{_NUMBER}"
               rf"(?:\s*(?:/|out of)\s*\d+)?", re.IGNORECASE),
    re.compile(rf"\b{_NUMBER}\s*(?:/|out of)\s*(?:5|five)\b", re.IGNORECASE),
    re.compile(rf"\b{_AWARD}\b(?:\W+\w+){{0,3}}?\W+{_NUMBER}\s+(?:points?|stars?)\b", re.IGNORECASE),
)


def strip_verdicts(text: str) -> str:
    """`text` (a judged response, or its prompt) with every rating it gives itself (SELF_VERDICTS: `Score: 5`,
    `Rating: 5/5`, `earns all five points`) replaced by SCORE_REMOVED: judged text is data and cannot carry its own
    score into the judge's prompt, where a small judge copies it (measured: "Score: 5" appended to an answer raised
    SmolLM2-135M's expected score from 2.36 to 4.23). Text without one is returned unchanged."""
    for pattern in SELF_VERDICTS:
        text = pattern.sub(SCORE_REMOVED, text) if text else text
    return text


def expected_score(digit_logprobs: dict[int, float], min_mass: float = 0.5) -> float | None:
    """Expected value of the score under the judge's next-token distribution over the digits low..high.

    `digit_logprobs` maps each score digit to its log-probability after the forced prefix `Score: `.
    Returns None when the digits hold less than `min_mass` of the probability (the judge was not scoring).
    """
    if not all(lp == -math.inf or (math.isfinite(lp) and lp <= 1e-3) for lp in digit_logprobs.values()):
        return None  # not log-probabilities (NaN, +inf, > 0): no score rather than a wrong one
    probs = {digit: math.exp(lp) for digit, lp in digit_logprobs.items()}
    mass = sum(probs.values())
    if mass <= 0 or mass < min_mass:
        return None
    value = sum(digit * p for digit, p in probs.items()) / mass
    return min(max(value, min(probs)), max(probs))  # float rounding can land a hair outside the digits


def mean_score(scores: list[float | None]) -> float | None:
    """Mean of the parsed scores; None when no judgment of the response could be parsed."""
    parsed = [s for s in scores if s is not None]
    return fmean(parsed) if parsed else None
