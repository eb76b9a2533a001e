"""The small protocol every sampling/judging engine implements, and its result type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


SEQUENCES_PER_BATCH = 16  # candidates a batched engine decodes together (across prompts)


class LogprobsUnavailable(RuntimeError):
    """The engine cannot give next-token log-probabilities (e.g. a server whose API returns none): judging formats
    that read them give way to the sampled judge (`judging.with_logprobs_fallback`)."""


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    finish_reason: str  # "stop" (ended on its own or at a stop string) or "length" (hit max_tokens)


class Engine(Protocol):
    """Raw-text completion plus next-token log-probabilities; chat templating lives in `chat_prompt`."""

    model_id: str

    def chat_prompt(self, user: str) -> str:
        """The templated text of a single user turn, ending with the assistant's generation prompt."""

    def complete(
        self, prompt: str, *, max_tokens: int, temperature: float, top_p: float, seed: int, stop: Sequence[str] = ()
    ) -> Completion:
        """Sample a continuation of the raw text `prompt`."""

    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> dict[str, float]:
        """Log-probabilities of each single-token candidate string as the next token after `prompt`."""

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Log-probability of each token of `continuation` (plain text) after the raw text `prompt`."""

    def render_chat(self, messages: list[dict]) -> str:
        """A whole conversation templated, ending with the assistant's generation prompt."""

    def encode(self, text: str) -> list[int]:
        """Token ids of a templated text (control tokens parsed, BOS where the model wants one)."""

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text (no BOS, control tokens not parsed)."""


def complete_n(engine: Engine, prompt: str, *, seeds: Sequence[int], max_tokens: int, temperature: float,
               top_p: float, stop: Sequence[str] = ()) -> list[Completion]:
    """One completion per seed: the engine's own `complete_n` (batched) when it has one, else one by one."""
    if hasattr(engine, "complete_n"):
        return engine.complete_n(prompt, seeds=seeds, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                 stop=stop)
    return complete_each(engine, prompt, seeds=seeds, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                         stop=stop)


def complete_many(engine: Engine, requests: Sequence[tuple[str, Sequence[int]]], *, max_tokens: int,
                  temperature: float, top_p: float, stop: Sequence[str] = ()) -> list[list[Completion]]:
    """For each (prompt, seeds), one completion per seed: the engine's own `complete_many` (candidates of several
    prompts decoded together) when it has one, else `complete_n` per prompt."""
    settings = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop)
    if hasattr(engine, "complete_many"):
        return engine.complete_many(requests, **settings)
    return [complete_n(engine, prompt, seeds=seeds, **settings) for prompt, seeds in requests]


def complete_each(engine: Engine, prompt: str, *, seeds: Sequence[int], max_tokens: int, temperature: float,
                  top_p: float, stop: Sequence[str] = ()) -> list[Completion]:
    """One `complete` per seed, one after another."""
    return [engine.complete(prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
            for seed in seeds]


def engine_map(engine: Engine, fn, items: Sequence) -> list:
    """`fn(item)` for every item, in order: concurrently where the engine takes concurrent requests (a server engine's
    own `map`, `concurrency` at a time), else one after another."""
    if hasattr(engine, "map"):
        return engine.map(fn, items)
    return [fn(item) for item in items]
