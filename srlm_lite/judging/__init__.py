"""Judging formats as one table: how the model's own judge turns a prompt's candidates into scores.

Every command that judges (`iterate`'s judge stage, `eval judge`, `eval h2h`, `eft build`, the CLI's caveat) looks
its format up in `JUDGE_FORMATS`; adding a judging format touches this table and the module that implements it.

A format either scores one response at a time (`score(engine, instruction, response, config, seeds)` -> verdicts,
each a dict with at least `score` and `source`) or a prompt's candidates together (`score_group(engine,
instruction, responses, config)` -> verdicts per response). `compare(engine, config, instruction, a, b, seeds)`
decides between two answers (h2h); formats without one compare their scores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..engines.base import LogprobsUnavailable
from . import pairwise, rubric, yesno
from .scores import mean_score


@dataclass(frozen=True)
class JudgeFormat:
    name: str
    help: str
    writes_text: bool  # the verdict holds a written justification (EFT builds on it)
    score: Callable | None = None
    score_group: Callable | None = None
    compare: Callable | None = None
    score_batch: Callable | None = None  # several (instruction, response) in one call (an engine's batched pass)
    samples_verdicts: bool = True  # draws J verdicts per response (False: one deterministic pass, J ignored)

    @property
    def pointwise(self) -> bool:
        return self.score is not None


JUDGE_FORMATS: dict[str, JudgeFormat] = {
    "expected": JudgeFormat(
        "expected", "no justification, one forward pass per response reading the expected digit after a forced "
        "'Score: ' (deterministic, J ignored; the format that ranked labelled pairs best here, see the README)",
        writes_text=False, score=rubric.expected_verdicts, score_batch=rubric.expected_verdicts_many,
        samples_verdicts=False),
    "forced": JudgeFormat(
        "forced", "J sampled justifications, each scored from its own 'Score: X' or else from the digit "
        "distribution after a forced 'Score: '", writes_text=True, score=rubric.forced_verdicts),
    "sampled": JudgeFormat(
        "sampled", "the paper's free-text verdict only (a small raw model rarely writes a score, so few pairs)",
        writes_text=True, score=rubric.sampled_verdicts),
    "yesno": JudgeFormat(
        "yesno", "each of the rubric's five points asked as a yes/no question, score = the sum of P(yes) (five "
        "forward passes per response, J ignored)", writes_text=False, score=yesno.yesno_verdicts,
        samples_verdicts=False),
    "pairwise": JudgeFormat(
        "pairwise", "every two candidates of a prompt compared in both orders, score = 5 x mean P(better) "
        "(J ignored)", writes_text=False, score_group=pairwise.round_robin_verdicts,
        compare=pairwise.compare_outcome, samples_verdicts=False),
}
JUDGE_MODES = tuple(JUDGE_FORMATS)
POINTWISE_MODES = tuple(name for name, f in JUDGE_FORMATS.items() if f.pointwise)
WRITTEN_MODES = tuple(name for name, f in JUDGE_FORMATS.items() if f.writes_text)


LOGPROBS_FALLBACK = "sampled"  # the format that needs no log-probs: where an engine gives none, judging uses it


def with_logprobs_fallback(judge: Callable, config, say: Callable[[str], None] | None = None):
    """`judge(config)`; where the engine gives no log-probabilities (a server whose API returns none) the format
    that reads them cannot run: say so, and `judge` again with the sampled judge (the paper's free-text verdicts)."""
    try:
        return judge(config)
    except LogprobsUnavailable as missing:
        if config.mode == LOGPROBS_FALLBACK:
            raise
        if say:
            say(f"judge: {missing}; the {config.mode} judge reads log-probabilities, so falling back to the "
                f"{LOGPROBS_FALLBACK} judge ({config.judge_samples} free-text verdicts of up to {config.max_tokens} "
                "tokens per response; a small model rarely writes a score)")
        return judge(replace(config, mode=LOGPROBS_FALLBACK))


def judge_format(mode: str) -> JudgeFormat:
    if mode not in JUDGE_FORMATS:
        raise ValueError(f"unknown judge mode {mode!r}; choose from {', '.join(JUDGE_MODES)}")
    return JUDGE_FORMATS[mode]


def verdicts_per_answer(mode: str, judge_samples) -> str:
    """How many verdicts a response gets, in words: "3 verdict(s) per answer", or "one deterministic pass per
    answer" for the formats that ignore J (an unknown mode: as the config says)."""
    fmt = JUDGE_FORMATS.get(mode)
    if fmt is not None and not fmt.samples_verdicts:
        return "one deterministic pass per answer (J ignored)"
    return f"{judge_samples} verdict(s) per answer"


def score_response(engine, instruction: str, response: str, config, seeds: list[int]) -> dict:
    """One response judged alone by a pointwise format: its verdicts and their mean score."""
    fmt = judge_format(config.mode)
    if not fmt.pointwise:
        raise ValueError(f"judge mode {config.mode!r} compares a prompt's candidates together; it cannot score one "
                         f"response alone (pointwise modes: {', '.join(POINTWISE_MODES)})")
    found = fmt.score(engine, instruction, response, config, seeds)
    return {"score": mean_score([v["score"] for v in found]), "verdicts": found}


def compare(engine, config, instruction: str, a: str, b: str, seeds: Callable[[str], list[int]]) -> dict:
    """One verdict on answers a and b: {"outcome": win/tie/loss for a, ...the judge's figures}; `seeds(side)` gives
    the seeds of side "a" or "b"."""
    fmt = judge_format(config.mode)
    if fmt.compare is not None:
        return fmt.compare(engine, config, instruction, a, b)
    if a == b:  # a text cannot beat itself; scoring it twice would only measure llama.cpp's float noise
        return {"outcome": "tie", "score_a": None, "score_b": None}
    score_a, score_b = (score_response(engine, instruction, text, config, seeds(side))["score"]
                        for side, text in (("a", a), ("b", b)))
    outcome = "tie"
    if score_a is not None and score_b is not None and score_a != score_b:
        outcome = "win" if score_a > score_b else "loss"
    return {"outcome": outcome, "score_a": score_a, "score_b": score_b}
