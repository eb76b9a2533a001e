"""Rewards from measured components (pure): per source, a prompt's candidates' rewards from their judge score,
implicit reward and verification share."""

from __future__ import annotations

import math
from statistics import fmean, pstdev
from typing import Sequence


def implicit_reward(logp_now: float, logp_before: float, n_tokens: int, beta: float, alpha: float) -> float:
    """beta * (log pi_now(y|x) - log pi_before(y|x)) - alpha * |y| (DPO's implicit reward, DICE's length term)."""
    return beta * (logp_now - logp_before) - alpha * n_tokens


def normalized_likelihood(logp: float, n_tokens: int, alpha: float) -> float:
    """Mean token log-probability - alpha * |y|: CREAM's first-round reward, where no previous model exists."""
    return logp / max(n_tokens, 1) - alpha * n_tokens


def verify_reward(met: Sequence[bool] | None, judge: float | None, tie_break: float) -> float | None:
    """Share of constraints met plus `tie_break` x judge/5 (which only orders equal shares); no constraints: judge/5."""
    judged = 0.0 if judge is None else judge / 5.0
    if not met:
        return None if judge is None else judged
    return sum(map(bool, met)) / len(met) + tie_break * judged


def standardized(values: Sequence[float | None]) -> list[float | None]:
    """z-scores within a group (None stays None; a constant group is all zeros)."""
    present = [v for v in values if v is not None]
    if not present:
        return list(values)
    mean, spread = fmean(present), pstdev(present)
    return [None if v is None else (0.0 if spread == 0 else (v - mean) / spread) for v in values]


def mixed(components: list[dict], weights: dict[str, float]) -> list[float | None]:
    """Weighted sum of each component standardised within the group; a component missing for every candidate is
    left out; a candidate missing a used component gets None (never a pair's chosen or rejected)."""
    out = [0.0] * len(components)
    for name, weight in weights.items():
        column = standardized([c.get(name) for c in components])
        if weight == 0 or all(v is None for v in column):
            continue
        out = [None if o is None or v is None else o + weight * v for o, v in zip(out, column)]
    return [None if o is None or (isinstance(o, float) and math.isnan(o)) else round(o, 6) for o in out]


def judge_rule(components: list[dict], tie_break: float, weights: dict[str, float]) -> list[float | None]:
    return [c.get("judge") for c in components]


def implicit_rule(components: list[dict], tie_break: float, weights: dict[str, float]) -> list[float | None]:
    return [c.get("implicit") for c in components]


def verify_rule(components: list[dict], tie_break: float, weights: dict[str, float]) -> list[float | None]:
    return [verify_reward(c.get("met"), c.get("judge"), tie_break) for c in components]


def mix_rule(components: list[dict], tie_break: float, weights: dict[str, float]) -> list[float | None]:
    verify = [verify_reward(c.get("met"), None, 0.0) if c.get("met") else None for c in components]
    rows = [{**c, "verify": v} for c, v in zip(components, verify)]
    if not weights:
        raise ValueError("the mix reward needs its weights (rewards.mix_weights of a RewardConfig)")
    return mixed(rows, weights)


def demote_loops(rewards: Sequence[float | None], loops: Sequence[bool]) -> list[float | None]:
    """The rewards with every looping candidate moved below every other candidate of the prompt, their order among
    themselves kept (a loop is never chosen over an answer that is not, and is the first to be rejected); a missing
    reward stays missing."""
    present = [r for r in rewards if r is not None]
    if not present or not any(loops):
        return list(rewards)
    shift = max(present) - min(present) + 1.0
    return [None if r is None else (round(r - shift, 6) if loop else r) for r, loop in zip(rewards, loops)]
