"""The pairwise judge: which of two answers is better, read from the answer-letter distribution, in both orders.

No text is generated: the judge's answer is forced to start with "The better response is Response" and the
probabilities of the next tokens " A" and " B" decide. Shown in both orders, the position bias of a small model
cancels out in `p_x` (P(x better) averaged over both orders).
"""

from __future__ import annotations

import math

from ..engines.base import Engine
from .rubric import render_untrusted
from .scores import SCORE_MAX

# The judge's answer is forced to start with this; the next token is " A" or " B" (one token each in SmolLM2's
# vocabulary; the engine refuses candidates that are not single tokens).
PAIRWISE_PREFIX = "The better response is Response"
LETTERS = (" A", " B")


def pairwise_prompt(engine: Engine, instruction: str, first: str, second: str) -> str:
    text = render_untrusted(engine, "judge_pairwise", instruction=instruction, response_a=first, response_b=second)
    return engine.chat_prompt(text) + PAIRWISE_PREFIX


def pairwise_verdict(engine: Engine, instruction: str, first: str, second: str, min_mass: float) -> dict:
    """One order: P(" A") vs P(" B") after the forced prefix. `choice` is "first", "second", or None when the
    two letters hold less than `min_mass` of the probability or are exactly equal."""
    logprobs = engine.next_token_logprobs(pairwise_prompt(engine, instruction, first, second), LETTERS)
    p_a, p_b = math.exp(logprobs[LETTERS[0]]), math.exp(logprobs[LETTERS[1]])
    mass = p_a + p_b
    p_first = p_a / mass if mass > 0 else 0.5
    choice = None
    if mass >= min_mass and p_first != 0.5:
        choice = "first" if p_first > 0.5 else "second"
    return {"p_first": round(p_first, 4), "mass": round(mass, 4), "choice": choice}


def compare_both_orders(engine: Engine, instruction: str, x: str, y: str, min_mass: float = 0.5) -> dict:
    """Judge x vs y shown as (A=x, B=y) and as (A=y, B=x). The winner is the response both orders pick; when
    the orders disagree (or one gives no verdict) it is a tie. `p_x` averages P(x better) over both orders."""
    forward = pairwise_verdict(engine, instruction, x, y, min_mass)
    backward = pairwise_verdict(engine, instruction, y, x, min_mass)
    pick_forward = {"first": "x", "second": "y"}.get(forward["choice"])
    pick_backward = {"first": "y", "second": "x"}.get(backward["choice"])
    winner = pick_forward if pick_forward is not None and pick_forward == pick_backward else None
    return {
        "winner": winner,
        "consistent": winner is not None,
        "p_x": round((forward["p_first"] + 1 - backward["p_first"]) / 2, 4),
        "orders": [forward, backward],
    }


def round_robin_verdicts(engine: Engine, instruction: str, answers: list[str], config) -> list[list[dict]]:
    """The pairwise judging format on a prompt's candidates: every two compared in both orders. Per answer, one
    verdict per opponent (its index): P(this answer is better), position-debiased, and its score 5 x P."""
    found: list[list[dict]] = [[] for _ in answers]
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            result = compare_both_orders(engine, instruction, answers[i], answers[j], config.min_digit_mass)
            for me, other, p in ((i, j, result["p_x"]), (j, i, round(1 - result["p_x"], 4))):
                found[me].append({"opponent": other, "p_better": p, "score": round(SCORE_MAX * p, 4),
                                  "source": "pairwise", "consistent": result["consistent"]})
    return found


def compare_outcome(engine: Engine, config, instruction: str, a: str, b: str) -> dict:
    """h2h with the pairwise format: a wins when both orders pick it, a tie when the orders disagree."""
    verdict = compare_both_orders(engine, instruction, a, b, config.min_digit_mass)
    return {"outcome": {"x": "win", "y": "loss"}.get(verdict["winner"], "tie"), "p_a": verdict["p_x"],
            "orders": verdict["orders"]}
