"""Where the reward comes from, as one table: each source turns a prompt's candidates into the scores pairs are
built from. Adding a source touches this table (and its module).

- judge: the model's own rubric judge (any judging format), the paper's reward;
- implicit: the DPO implicit reward of the current model against the one before it, beta * (log pi_t - log
  pi_{t-1}), minus `alpha * tokens` (CREAM, DICE); in the first iteration, the length-normalised log-likelihood under
  the starting model (or, started with --init, the starting model against the base);
- verify: the share of the prompt's verifiable constraints a response meets (IFEval's checkers), the judge score as
  the tie-break; prompts without constraints are ranked by the judge;
- mix: a weighted sum of the above and of the answer's length, each standardised within the prompt's candidates
  (a negative length weight prefers shorter answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..text_stats import seq_rep_n
from .combine import demote_loops, implicit_rule, judge_rule, mix_rule, verify_rule
from .constraints import FAMILIES, HELD_OUT_FAMILIES, TRAIN_FAMILIES


@dataclass(frozen=True)
class RewardSource:
    name: str
    help: str
    components: tuple[str, ...]  # what must be measured for it: judge, implicit, verify, length
    rule: Callable  # (components of a prompt's candidates, tie_break, weights) -> their rewards (pure)


REWARD_SOURCES = {
    "judge": RewardSource("judge", "the model's own rubric judge (the judging format of [judge] mode)", ("judge",),
                          judge_rule),
    "implicit": RewardSource("implicit", "the DPO implicit reward beta * (log pi_t - log pi_(t-1)) - alpha * tokens "
                             "(length-normalised log-likelihood in the first iteration)", ("implicit",), implicit_rule),
    "verify": RewardSource("verify", "the share of the prompt's verifiable constraints met (IFEval's checks), the "
                           "judge as the tie-break", ("judge", "verify"), verify_rule),
    "mix": RewardSource("mix", "a weighted sum of judge, implicit, verify and the answer's length, each "
                        "standardised within a prompt (weights: mix_judge, mix_implicit, mix_verify, mix_length)",
                        ("judge", "implicit", "verify", "length"), mix_rule),
}
SOURCES = tuple(REWARD_SOURCES)


def mix_weights(reward) -> dict[str, float]:
    """The `mix` source's weight of each component, from a RewardConfig."""
    return {"judge": reward.mix_judge, "implicit": reward.mix_implicit, "verify": reward.mix_verify,
            "length": reward.mix_length}


def needed_components(reward) -> tuple[str, ...]:
    """What must be measured for a RewardConfig's source: its components, for `mix` only those it weighs (an
    implicit reward of weight 0 costs no log-probs)."""
    source = REWARD_SOURCES[reward.source]
    if source.rule is not mix_rule:
        return source.components
    weights = mix_weights(reward)
    return tuple(name for name in source.components if weights.get(name))


def gather_components(needed: tuple[str, ...], response: str, *, judge: Callable[[], float | None],
                      implicit: Callable[[], float], met: Callable[[], list[bool] | None]) -> dict:
    """One response's components for the reward (`needed`: see needed_components); `judge`, `implicit` and `met`
    are called only when needed. `met` is left out for a prompt without constraints (None)."""
    found: dict = {}
    if "judge" in needed:
        found["judge"] = judge()
    if "implicit" in needed:
        found["implicit"] = implicit()
    if "verify" in needed and (checks := met()) is not None:
        found["met"] = checks
    if "length" in needed:
        found["length"] = len(response)
    return found


def group_rewards(source: str, components: list[dict], *, tie_break: float = 0.01,
                  weights: dict[str, float] | None = None) -> list[float | None]:
    """The rewards of one prompt's candidates under `source`: its rule in REWARD_SOURCES (pure). `mix` needs its
    `weights` (mix_weights of a RewardConfig)."""
    if source not in REWARD_SOURCES:
        raise ValueError(f"unknown reward source {source!r}")
    return REWARD_SOURCES[source].rule(components, tie_break, weights or {})


def looping(reward, responses: list[str]) -> list[bool]:
    """Which responses are loops under a RewardConfig: seq-rep-4 above `max_repetition` (none when it is 1)."""
    return [reward.max_repetition < 1 and seq_rep_n(r, 4) > reward.max_repetition for r in responses]


def rank_loops_last(reward, rewards: list[float | None], responses: list[str]) -> list[float | None]:
    """A prompt's candidates' rewards with its loops (`looping`) ranked below every other candidate (pure)."""
    return demote_loops(rewards, looping(reward, responses))


__all__ = ["FAMILIES", "HELD_OUT_FAMILIES", "REWARD_SOURCES", "RewardSource", "SOURCES", "TRAIN_FAMILIES",
           "gather_components", "group_rewards", "mix_weights", "looping", "needed_components",
           "rank_loops_last"]
