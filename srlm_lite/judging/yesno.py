"""The `yesno` judging format: each of the rubric's five points asked as its own yes/no question; the score is the
sum of P(yes) (normalised over Yes and No), five forward passes per response, the question and the response shared
as the prompt's prefix (the criterion comes last, so its KV cache is reused). A continuous probability suits a
small judge better than a 1-5 digit (see the README's reward section for what it measured here)."""

from __future__ import annotations

import math

from ..engines.base import Engine
from .rubric import render_untrusted

CRITERIA = (
    "Is it on topic, offering some information related to the question, even if incomplete?",
    "Does it cover a substantial part of what was asked, even without fully resolving it?",
    "Does it answer the core of the question in a useful way?",
    "Is it written clearly from an AI assistant's point of view, answering the question directly and completely?",
    "Is it flawlessly fitted to the question, expert and insightful, with nothing extraneous?",
)
ANSWER_PREFIX = "Answer:"
YES, NO = " Yes", " No"


def yesno_prompt(engine: Engine, instruction: str, response: str, criterion: str) -> str:
    text = render_untrusted(engine, "judge_yesno", instruction=instruction, response=response, criterion=criterion)
    return engine.chat_prompt(text) + ANSWER_PREFIX


def p_yes(logprobs: dict[str, float]) -> tuple[float, float]:
    """(P(yes) normalised over the two answers, their probability mass) (pure)."""
    yes, no = math.exp(logprobs[YES]), math.exp(logprobs[NO])
    mass = yes + no
    return (yes / mass if mass > 0 else 0.5), mass


def yesno_verdicts(engine: Engine, instruction: str, response: str, config, seeds: list[int]) -> list[dict]:
    """Format `yesno`: one verdict, score = sum over the five criteria of P(yes); no score when the answers hold
    less than `min_digit_mass` of the probability on average (the judge was not answering)."""
    found = [p_yes(engine.next_token_logprobs(yesno_prompt(engine, instruction, response, c), (YES, NO)))
             for c in CRITERIA]
    mass = sum(m for _, m in found) / len(found)
    score = round(sum(p for p, _ in found), 4) if mass >= config.min_digit_mass else None
    return [{"text": "", "seed": None, "score": score, "source": "yesno" if score is not None else "none",
             "p_yes": [round(p, 4) for p, _ in found], "answer_mass": round(mass, 4)}]
