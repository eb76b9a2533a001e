"""`eval reward`: the signal check before training. For each prompt, N candidates from the model are ranked by the
reward; the IFEval checks tell how good the best-ranked, a random and the worst-ranked candidate are; labelled
pairs tell how often the reward prefers the preferred answer; ties, the spread and the reward's correlation with
length tell whether it is only length. One command answers "does my reward prefer better answers?"."""

from __future__ import annotations

import time
from typing import Callable

from ..judging import judge_format, score_response
from ..engines.base import complete_n
from ..rewards import (REWARD_SOURCES, gather_components, group_rewards, mix_weights, needed_components,
                       rank_loops_last)
from ..rewards.combine import implicit_reward, normalized_likelihood
from ..rewards.signal import signal
from ..seeds import derive_seed
from ..stats import pair_credit, proportion

Progress = Callable[[str, int, int], None]


class RewardModel:
    """A reward source on one model (and the one before it, for the implicit reward)."""

    def __init__(self, engine, config, previous=None):
        self.engine, self.previous, self.config = engine, previous, config
        self.source = REWARD_SOURCES[config.reward.source]
        self.needed = needed_components(config.reward)
        if "judge" in self.needed and not judge_format(config.judge.mode).pointwise:
            raise ValueError(f"the reward check scores answers one by one: judge mode {config.judge.mode!r} "
                             f"compares them in pairs; use expected, forced, sampled or yesno")

    def rewards(self, instruction: str, responses: list[str], checks: list[list[bool] | None], key: str) -> list:
        """The rewards of one prompt's candidates (checks: per candidate, the constraints it meets, or None)."""
        components = [self._components(instruction, response, met, key, k)
                      for k, (response, met) in enumerate(zip(responses, checks))]
        reward = self.config.reward
        rewards = group_rewards(self.source.name, components, tie_break=reward.tie_break, weights=mix_weights(reward))
        return rank_loops_last(reward, rewards, responses)

    def _components(self, instruction: str, response: str, met: list[bool] | None, key: str, k: int) -> dict:
        seeds = [derive_seed(self.config.seed, "eval-reward", key, k, j) for j in range(self.config.judge.judge_samples)]
        return gather_components(
            self.needed, response, met=lambda: met, implicit=lambda: self._implicit(instruction, response),
            judge=lambda: score_response(self.engine, instruction, response, self.config.judge, seeds)["score"])

    def _implicit(self, instruction: str, response: str) -> float:
        reward = self.config.reward
        now = self.engine.continuation_logprobs(self.engine.chat_prompt(instruction), response)
        if self.previous is None:
            return normalized_likelihood(sum(now), len(now), reward.length_penalty)
        before = self.previous.continuation_logprobs(self.previous.chat_prompt(instruction), response)
        return implicit_reward(sum(now), sum(before), len(now), reward.implicit_beta, reward.length_penalty)


def check_reward(model: RewardModel, records: list[dict], pairs: list[dict] | None, *, samples: int = 4,
                 max_tokens: int = 256, seed: int = 0, progress: Progress | None = None) -> dict:
    """The signal check: IFEval-style `records` (prompt, instruction_id_list, kwargs; or plain prompts) answered
    N times and ranked; labelled `pairs` (instruction, response_a, response_b, preferred) judged."""
    started = time.perf_counter()
    groups, items = [], []
    for done, record in enumerate(records, 1):
        group, item = _prompt_group(model, record, samples, max_tokens, seed)
        groups.append(group)
        items.append(item)
        if progress:
            progress("reward check: prompts", done, len(records))
    summary = {"reward": model.source.name, "judge_mode": model.config.judge.mode, "samples": samples,
               "prompts_checked": len(records), **signal(groups)}
    if pairs:
        summary.update(_pairs_accuracy(model, pairs, progress))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["items"] = items
    return summary


def _prompt_group(model: RewardModel, record: dict, samples: int, max_tokens: int, seed: int) -> tuple:
    from .ifeval import check_response

    engine = model.engine
    key = str(record.get("key", record.get("id", record["prompt"][:40])))
    seeds = [derive_seed(seed, "eval-reward-sample", key, k) for k in range(samples)]
    outs = complete_n(engine, engine.chat_prompt(record["prompt"]), seeds=seeds, max_tokens=max_tokens,
                      temperature=0.7, top_p=0.9)
    texts = [o.text.strip() for o in outs]
    checks = [check_response(record, t)["loose"] if record.get("instruction_id_list") else None for t in texts]
    rewards = model.rewards(record["prompt"], texts, checks, key)
    group = [{"reward": r, "length": len(t), "pass": sum(c) / len(c) if c else None}
             for r, t, c in zip(rewards, texts, checks)]
    return group, {"key": key, "prompt": record["prompt"], "candidates": [
        {**g, "response": t} for g, t in zip(group, texts)]}


def _pairs_accuracy(model: RewardModel, pairs: list[dict], progress: Progress | None) -> dict:
    """How often the reward ranks the preferred answer of a labelled pair higher (ties half), by length too."""
    credits, shorter = [], []
    for done, pair in enumerate(pairs, 1):
        a, b = model.rewards(pair["instruction"], [pair["response_a"], pair["response_b"]], [None, None],
                             f"pair-{pair['index']}")
        credit = pair_credit(a, b, pair["preferred"])
        credits.append(credit)
        preferred, other = (pair["response_a"], pair["response_b"]) if pair["preferred"] == "a" else \
            (pair["response_b"], pair["response_a"])
        if len(preferred) < len(other):
            shorter.append(credit)
        if progress:
            progress("reward check: pairs", done, len(pairs))
    overall, short = proportion(credits), proportion(shorter)
    return {"pairs_accuracy": overall["accuracy"], "pairs_ci_low": overall["ci_low"],
            "pairs_ci_high": overall["ci_high"], "pairs_n": overall["n"],
            "pairs_accuracy_preferred_shorter": short["accuracy"], "pairs_preferred_shorter_n": short["n"]}
