"""Measuring what the reward sources need, with models: log-probabilities under the current and the previous
model (the implicit reward), constraints met (verify), and the previous model's ranking (consistency)."""

from __future__ import annotations

from functools import cached_property

from ..engines import EngineOptions, open_engine
from ..judging import judge_format, score_response
from ..runs import model_spec, sampling_adapter
from ..seeds import derive_seed
from ..stats import consistency
from . import gather_components
from .combine import implicit_reward, normalized_likelihood
from .verify import constraints_by_prompt, met_share


class Measurer:
    """Per iteration: the models before the current one opened on first use, log-probs cached by (model, response)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.config = ctx.config
        self._logps: dict[tuple[int, str], tuple[float, int]] = {}

    @cached_property
    def constraints(self) -> dict[str, dict]:
        return constraints_by_prompt(self.ctx.dir)

    def engine(self, back: int):
        """The engine of the model `back` steps before the current one (0 = the current; None when none exists)."""
        if back == 0:
            return self.ctx.engine
        key = f"_engine_{back}"
        if key not in self.__dict__:
            adapter = previous_adapter(self.ctx, back)
            self.__dict__[key] = None if adapter is False else open_engine(
                model_spec(self.config, adapter, f"{back} back"), EngineOptions.from_config(self.config.model))
        return self.__dict__[key]

    def logp(self, back: int, item: dict) -> tuple[float, int] | None:
        """(sum of log-probs, tokens) of a response under the model `back` steps back (None: no such model)."""
        engine = self.engine(back)
        if engine is None:
            return None
        key = (back, item["id"])
        if key not in self._logps:
            found = engine.continuation_logprobs(engine.chat_prompt(item["prompt"]), item["response"])
            self._logps[key] = (sum(found), len(found))
        return self._logps[key]

    def implicit(self, item: dict, back: int = 0) -> float:
        """The implicit reward of the model `back` steps back against the one before it (normalised likelihood
        where there is none)."""
        reward = self.config.reward
        now, before = self.logp(back, item), self.logp(back + 1, item)
        if before is None:
            return normalized_likelihood(now[0], now[1], reward.length_penalty)
        return implicit_reward(now[0], before[0], now[1], reward.implicit_beta, reward.length_penalty)

    def components(self, item: dict, judgments: dict[str, dict], needed: tuple[str, ...]) -> dict:
        return gather_components(
            needed, item["response"], judge=lambda: judgments[item["id"]]["score"],
            implicit=lambda: round(self.implicit(item), 6),
            met=lambda: met_share(self.constraints.get(item["prompt_id"]), item["response"]))

    def consistency(self, group: list[dict], rewards: list[float | None]) -> float | None:
        """C in [0, 1] between this model's ranking of the group (`rewards`) and the previous model's ranking by the
        same source; None where it does not apply (no previous model; verify, mix; a pairwise judge)."""
        before = self.previous_ranking(group)
        if before is None:
            return None
        both = [(r, b) for r, b in zip(rewards, before) if r is not None and b is not None]
        return round(consistency([r for r, _ in both], [b for _, b in both]), 4) if len(both) >= 2 else None

    def previous_ranking(self, group: list[dict]) -> list[float | None] | None:
        source = self.config.reward.source
        if source == "implicit":
            return [self.implicit(item, back=1) for item in group] if self.engine(1) is not None else None
        if source != "judge" or self.engine(1) is None or not judge_format(self.config.judge.mode).pointwise:
            return None
        judge, engine = self.config.judge, self.engine(1)
        seeds = [[derive_seed(self.config.seed, self.ctx.t, "judge-previous", item["id"], j)
                  for j in range(judge.judge_samples)] for item in group]
        return [score_response(engine, item["prompt"], item["response"], judge, s)["score"]
                for item, s in zip(group, seeds)]


def previous_adapter(ctx, back: int):
    """The adapter of the model `back` steps before iteration t's policy (None = the base model, False = there is
    no such model)."""
    t = ctx.t - back
    if t >= 1:
        return sampling_adapter(ctx.paths.root, ctx.config, t)
    if t == 0 and ctx.config.init:
        return None  # started from --init: the base model came before it
    return False
