"""MLX engine: sampling, the judges' next-token distributions and log-probs with mlx-lm, the LoRA applied in-process.

Sampling decodes the candidates of several prompts together with mlx-lm's `BatchGenerator`: each prompt is
prefilled once and its KV cache copied to its candidates, every candidate has its own seeded sampler (top-p, then
temperature, then a draw from its own PRNG key), so candidate k with seed s is reproducible whatever it is batched
with. The judges' distributions (`next_token_logprobs_many`) run the prompts' common prefix (the rubric) once and
their tails together in one padded forward pass. On Apple Silicon all of this runs on the GPU."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

from ..mlx_runtime import mx
from .base import SEQUENCES_PER_BATCH, Completion
from .prefix import common_prefix

JUDGE_BATCH = 8  # judge prompts whose tails are evaluated together
MIN_PREFIX = 16  # a shared prefix shorter than this is not worth a cache of its own


def seeded_sampler(temperature: float, top_p: float, seed: int):
    """A sampler for one sequence: greedy at temperature 0, else top-p then temperature then a draw from a PRNG key
    derived from `seed` (split at every step), independent of any other sequence in the batch."""
    from mlx_lm.sample_utils import apply_top_p

    state = {"key": mx.random.key(seed & 0xFFFFFFFF)}

    def sample(logprobs: mx.array) -> mx.array:
        if temperature <= 0:
            return mx.argmax(logprobs, axis=-1)
        state["key"], draw = mx.random.split(state["key"])
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * (1.0 / temperature), key=draw)

    return sample


class MLXEngine:
    """Samples and scores with one MLX model (a GGUF built into MLX, or a model folder), adapter in-process."""

    def __init__(self, model, tokenizer, *, model_id: str, context_length: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = context_length
        self._prefix: tuple[list[int], list] | None = None  # the last judge prefix and its KV cache
        self._last_prompt: list[int] | None = None

    @classmethod
    def open(cls, model, options) -> "MLXEngine":
        """The engine registry's constructor: `model` a ModelSpec, `options` an EngineOptions."""
        from ..models.loading import mlx_model_for, tokenizer_for

        mlx_model = mlx_model_for(model, dequantize=True, bits=getattr(options, "mlx_bits", 0))
        name = Path(model.base).name + (f"+{model.adapter}" if model.adapter else "")
        return cls(mlx_model, tokenizer_for(model), model_id=name, context_length=options.n_ctx)

    # ------------------------------------------------------------------ text
    def chat_prompt(self, user: str) -> str:
        return self.tokenizer.prompt_text(user)

    def render_chat(self, messages: list[dict]) -> str:
        return self.tokenizer.render(messages, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, special=False, add_bos=False)

    # ------------------------------------------------------------------ sampling
    def complete(self, prompt: str, *, max_tokens: int, temperature: float, top_p: float, seed: int,
                 stop: Sequence[str] = ()) -> Completion:
        return self.complete_many([(prompt, [seed])], max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop)[0][0]

    def complete_n(self, prompt: str, *, seeds: Sequence[int], max_tokens: int, temperature: float, top_p: float,
                   stop: Sequence[str] = ()) -> list[Completion]:
        return self.complete_many([(prompt, seeds)], max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop)[0]

    def complete_many(self, requests: Sequence[tuple[str, Sequence[int]]], *, max_tokens: int, temperature: float,
                      top_p: float, stop: Sequence[str] = ()) -> list[list[Completion]]:
        """For each (prompt, seeds), one completion per seed; up to SEQUENCES_PER_BATCH sequences decoded together."""
        units = [(r, seed) for r, (_, seeds) in enumerate(requests) for seed in seeds]
        prompts = {r: self.encode(prompt) for r, (prompt, _) in enumerate(requests)}
        out: list[list[Completion]] = [[] for _ in requests]
        for start in range(0, len(units), SEQUENCES_PER_BATCH):
            group = units[start:start + SEQUENCES_PER_BATCH]
            done = self._decode_group([(prompts[r], seed) for r, seed in group], max_tokens, temperature, top_p,
                                      stop)
            for (r, _), completion in zip(group, done):
                out[r].append(completion)
        return out

    def _decode_group(self, units: list[tuple[list[int], int]], max_tokens: int, temperature: float, top_p: float,
                      stop: Sequence[str]) -> list[Completion]:
        from mlx_lm.generate import BatchGenerator

        budget = max(1, min(max_tokens, self.context_length - max(len(p) for p, _ in units)))
        generator = BatchGenerator(self.model, max_tokens=budget, completion_batch_size=len(units),
                                   prefill_batch_size=len(units))
        try:
            caches = self._prefilled([p for p, _ in units])
            uids = generator.insert([[p[-1]] for p, _ in units], caches=caches,
                                    samplers=[seeded_sampler(temperature, top_p, s) for _, s in units])
            tokens, finish = self._run(generator, list(uids), budget, stop)
        finally:
            generator.close()
        return [self._completion(tokens[u], finish[u], stop) for u in uids]

    def _prefilled(self, prompts: list[list[int]]) -> list[list]:
        """A KV cache holding each prompt but its last token; a prompt repeated (N candidates) is prefilled once."""
        from mlx_lm.models.cache import make_prompt_cache

        made: dict[tuple, list] = {}
        caches = []
        for prompt in prompts:
            key = tuple(prompt)
            if key not in made:
                cache = make_prompt_cache(self.model)
                if len(prompt) > 1:
                    self.model(mx.array([prompt[:-1]]), cache=cache)
                    mx.eval([c.state for c in cache])
                made[key] = cache
            caches.append(copy.deepcopy(made[key]))
        return caches

    def _run(self, generator, uids: list[int], budget: int, stop: Sequence[str]):
        """Step the generator until every sequence ended (an end-of-generation token, a stop string, the budget)."""
        eog = self.tokenizer.eog_token_ids
        tokens = {u: [] for u in uids}
        finish = {u: None for u in uids}
        while any(f is None for f in finish.values()):
            responses = generator.next_generated()
            if not responses:
                break
            ended = []  # sequences we stop that the generator still runs (its own finished ones it drops itself)
            for r in responses:
                if finish[r.uid] is not None:
                    continue
                if r.token in eog:
                    finish[r.uid] = "stop"
                else:
                    tokens[r.uid].append(r.token)
                    finish[r.uid] = self._finish(tokens[r.uid], budget, stop, r.finish_reason)
                if finish[r.uid] is not None and r.finish_reason is None:
                    ended.append(r.uid)
            if ended:
                generator.remove(ended)
        return tokens, {u: f or "length" for u, f in finish.items()}

    def _finish(self, tokens: list[int], budget: int, stop: Sequence[str], reason) -> str | None:
        if stop:
            text = self.tokenizer.decode(tokens)
            if any(s in text for s in stop):
                return "stop"
        if len(tokens) >= budget or reason == "length":
            return "length"
        return "stop" if reason == "stop" else None

    def _completion(self, tokens: list[int], finish: str, stop: Sequence[str]) -> Completion:
        text = self.tokenizer.decode(tokens)
        for s in stop:
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        return Completion(text=text, n_tokens=len(tokens), finish_reason=finish)

    # ------------------------------------------------------------------ scoring
    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> dict[str, float]:
        return self.next_token_logprobs_many([prompt], candidates)[0]

    def next_token_logprobs_many(self, prompts: Sequence[str], candidates: Sequence[str]) -> list[dict[str, float]]:
        """For each prompt, the log-probabilities of the single-token candidates as its next token: the prompts'
        common prefix evaluated once (and kept for the next call), their tails together in one padded pass."""
        ids = {c: self._single_token(c) for c in candidates}
        found = []
        for start in range(0, len(prompts), JUDGE_BATCH):
            rows = self._last_logprobs([self.encode(p) for p in prompts[start:start + JUDGE_BATCH]])
            found += [{c: float(row[i]) for c, i in ids.items()} for row in rows]
        return found

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """log p of each token of `continuation` (plain text) after the raw text `prompt`, in one forward pass."""
        head, tail = self.encode(prompt), self.encode_text(continuation)
        if not tail:
            return []
        logits = self.model(mx.array([head + tail[:-1]]))[0, len(head) - 1:].astype(mx.float32)
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        picked = mx.take_along_axis(logp, mx.array(tail)[:, None], axis=-1)[:, 0]
        return [float(x) for x in picked.tolist()]

    def _single_token(self, text: str) -> int:
        ids = self.encode_text(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens in this vocabulary; a score candidate must be one")
        return ids[0]

    def _last_logprobs(self, prompts: list[list[int]]) -> list[mx.array]:
        """Log-softmax of the last position of each prompt; the longest prefix shared with the cached one (or, for a
        batch, among the prompts) is evaluated once and its KV cache reused."""
        shared = self._shared_prefix(prompts)
        cache = self._prefix_cache(prompts[0][:shared])
        tails = [p[shared:] for p in prompts]
        width = max(len(t) for t in tails)
        batch = mx.array([t + [t[-1]] * (width - len(t)) for t in tails])  # right-padded: causal, so harmless
        if len(tails) > 1:
            for layer_cache in cache:
                if layer_cache.keys is not None:
                    layer_cache.keys = mx.repeat(layer_cache.keys, len(tails), axis=0)
                    layer_cache.values = mx.repeat(layer_cache.values, len(tails), axis=0)
        logits = self.model(batch, cache=cache).astype(mx.float32)
        rows = [logits[i, len(t) - 1] for i, t in enumerate(tails)]
        self._last_prompt = prompts[-1]
        return [row - mx.logsumexp(row) for row in rows]

    def _shared_prefix(self, prompts: list[list[int]]) -> int:
        """How many leading tokens to take from a prefix cache: the cached prefix when every prompt extends it,
        else what the prompts share with each other (or, alone, with the previous prompt); at least one token of
        each prompt is left to evaluate."""
        limit = min(len(p) for p in prompts) - 1
        if self._prefix is not None and all(p[:len(self._prefix[0])] == self._prefix[0] for p in prompts):
            return min(len(self._prefix[0]), limit)
        others = prompts[1:] or ([self._last_prompt] if self._last_prompt else [])
        shared = min((common_prefix(prompts[0], p) for p in others), default=0)
        return min(shared, limit) if shared >= MIN_PREFIX else 0

    def _prefix_cache(self, prefix: list[int]) -> list:
        """A fresh copy of the KV cache of `prefix` (computed once per distinct prefix)."""
        from mlx_lm.models.cache import make_prompt_cache

        if not prefix:
            return make_prompt_cache(self.model)
        if self._prefix is None or self._prefix[0] != prefix:
            cache = make_prompt_cache(self.model)
            self.model(mx.array([prefix]), cache=cache)
            mx.eval([c.state for c in cache])
            self._prefix = (prefix, cache)
        return copy.deepcopy(self._prefix[1])
