"""Word statistics of generated text (pure): n-grams, distinct-n, seq-rep-n, and whether an answer is degenerate
(a loop that repeats itself).

- distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams, pooled over texts;
- seq-rep-n (Welleck et al. 2019): the share of one text's word n-grams that repeat an earlier one;
- degenerate: seq-rep-4 above DEGENERATE_REPETITION, i.e. more than half of the answer's 4-grams are repeats. A
  135M model decoding greedily falls into such loops often (37% of M0's IFEval answers here), and a loop can pass
  IFEval's checks by accident (no commas, all lowercase, at least N words), so evaluations report both.
"""

from __future__ import annotations

import statistics
from typing import Sequence

DEGENERATE_REPETITION = 0.5


def words(text: str) -> list[str]:
    return text.lower().split()


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Distinct word n-grams / all word n-grams, pooled over the texts; None when there are none."""
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else None


def seq_rep_n(text: str, n: int = 4) -> float:
    """1 - distinct n-grams / n-grams of one text (0 for a text too short to repeat anything)."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def repetition(texts: Sequence[str], n: int = 4) -> float | None:
    """Mean seq-rep-n over the texts."""
    return statistics.fmean(seq_rep_n(t, n) for t in texts) if texts else None


def degenerate(text: str) -> bool:
    """The answer is a loop: more than DEGENERATE_REPETITION of its word 4-grams repeat an earlier one."""
    return seq_rep_n(text, 4) > DEGENERATE_REPETITION
