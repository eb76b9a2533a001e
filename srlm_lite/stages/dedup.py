"""ROUGE-L near-duplicate filtering of generated prompts, as in Self-Instruct (pure functions)."""

from __future__ import annotations

import re

from rapidfuzz.distance import LCSseq

_WORD = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words (rouge-score's default tokenization, without stemming)."""
    return _WORD.findall(text.lower())


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F-measure of two token lists: 2 * LCS / (len(a) + len(b))."""
    if not a or not b:
        return 0.0
    return 2.0 * LCSseq.similarity(a, b) / (len(a) + len(b))


class RougeDeduplicator:
    """Keeps token lists of accepted texts; `is_duplicate` is True when ROUGE-L to any exceeds the threshold."""

    def __init__(self, threshold: float = 0.7, texts: list[str] = ()):
        self.threshold = threshold
        self._kept: list[list[str]] = []
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        self._kept.append(rouge_tokens(text))

    def max_similarity(self, text: str) -> float:
        tokens = rouge_tokens(text)
        return max((rouge_l(tokens, kept) for kept in self._kept), default=0.0)

    def is_duplicate(self, text: str) -> bool:
        return self.max_similarity(text) > self.threshold
