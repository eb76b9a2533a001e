"""Continuations of several prompts decoded together: llama.cpp's multi-sequence batch API, each prompt's KV shared.

The first prompt is evaluated (reusing whatever prefix the cache already holds) into sequence 0; each further
prompt shares the cells of its common prefix with the first (usually the chat template's system turn) and only
its own tail is evaluated. A prompt's cells are then shared with the other sequences of its candidates
(`llama_memory_seq_cp` on a unified KV cache tags the same cells, nothing is copied). Every decode step is ONE
`llama_decode` of one token per live sequence -- up to MAX_SEQUENCES, across prompts -- instead of one decode per
token. Each sequence has its own sampler chain -- the chain llama-cpp-python builds for `create_completion`
(top-p, then temperature, then a seeded draw) -- so candidate k with seed s_k is drawn from exactly the
distribution the sequential path draws from with s_k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .base import SEQUENCES_PER_BATCH, Completion
from .prefix import common_prefix, eval_reusing_prefix

MAX_SEQUENCES = SEQUENCES_PER_BATCH  # n_seq_max of the context: the most candidates decoded together


@dataclass
class _Seq:
    sampler: object
    seq_id: int
    position: int  # where the next token fed to the model goes
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None


def sampler_chain(temperature: float, top_p: float, seed: int):
    """The chain `Llama.create_completion` uses with top_k=0, min_p=0, repeat_penalty=1: top-p, temp, dist(seed);
    greedy at temperature 0."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class MultiSequenceSampler:
    """Decodes up to MAX_SEQUENCES continuations of one or more prompts together on a `llama_cpp.Llama` whose
    context was made with n_seq_max >= MAX_SEQUENCES and a unified KV cache (see `load_llama(n_seq_max=...)`)."""

    def __init__(self, llm, eos_token_id: int):
        import llama_cpp

        self.llm = llm
        self.eos = eos_token_id
        self.batch = llama_cpp.llama_batch_init(max(MAX_SEQUENCES, llm.n_batch), 0, 1)
        self._lib = llama_cpp

    def close(self) -> None:
        if self.batch is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None

    def __del__(self):
        self.close()

    @property
    def _memory(self):
        return self._lib.llama_get_memory(self.llm._ctx.ctx)

    def sample(self, prompt: list[int], seeds: Sequence[int], *, max_tokens: int, temperature: float, top_p: float,
               stop: Sequence[str] = ()) -> list[Completion]:
        """One completion per seed, all continuing `prompt` (token ids), decoded together."""
        return self.sample_groups([prompt], [seeds], max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop)[0]

    def sample_groups(self, prompts: Sequence[list[int]], seeds: Sequence[Sequence[int]], *, max_tokens: int,
                      temperature: float, top_p: float, stop: Sequence[str] = ()) -> list[list[Completion]]:
        """For each prompt (token ids), one completion per seed of its group; all decoded together."""
        n = sum(len(group) for group in seeds)
        if len(prompts) != len(seeds) or not prompts or not all(seeds) or n > MAX_SEQUENCES:
            raise ValueError(f"one non-empty seed group per prompt, at most {MAX_SEQUENCES} seeds in all")
        n_ctx = self.llm.n_ctx()
        max_tokens = min(max_tokens, (n_ctx - sum(len(p) for p in prompts)) // n)
        if max_tokens < 1:
            raise ValueError(f"prompts of {sum(len(p) for p in prompts)} tokens and {n} continuations do not fit "
                             f"the context of {n_ctx}")
        groups: list[list[_Seq]] = []
        try:
            for prompt, group_seeds in zip(prompts, seeds):
                first = sum(len(g) for g in groups)
                groups.append([_Seq(sampler_chain(temperature, top_p, seed), first + k, len(prompt))
                               for k, seed in enumerate(group_seeds)])
                self._eval_prompt(prompt, first, len(group_seeds), prompts[0])
                for seq in groups[-1]:  # the prompt's logits are overwritten by the next prompt's evaluation
                    self._take(seq, self._draw(seq, -1), max_tokens, stop)
            every = [seq for group in groups for seq in group]
            while live := [seq for seq in every if seq.finish is None]:
                self._decode_step(live)
                for index, seq in enumerate(live):
                    self._take(seq, self._draw(seq, index), max_tokens, stop)
        finally:
            for seq in (seq for group in groups for seq in group):
                self._lib.llama_sampler_free(seq.sampler)
            self._release(len(prompts[0]))
        return [[self._completion(seq, stop) for seq in group] for group in groups]

    def _completion(self, seq: _Seq, stop: Sequence[str]) -> Completion:
        text = seq.text if stop else self.llm.detokenize(seq.tokens).decode("utf-8", errors="ignore")
        return Completion(text=text, n_tokens=len(seq.tokens), finish_reason=seq.finish)

    def _eval_prompt(self, prompt: list[int], first: int, n: int, first_prompt: list[int]) -> None:
        """`prompt` into sequence `first`, then shared with sequences first+1..first+n-1. The first prompt goes to
        sequence 0 reusing the cached prefix; a later one shares its common prefix with the first prompt's cells."""
        memory = self._memory
        if first == 0:
            for k in range(1, MAX_SEQUENCES):
                self._lib.llama_memory_seq_rm(memory, k, -1, -1)
            eval_reusing_prefix(self.llm, prompt)
        else:
            common = min(common_prefix(prompt, first_prompt), len(prompt) - 1)
            if common:
                self._lib.llama_memory_seq_cp(memory, 0, first, 0, common)
            self._eval_tail(prompt, common, first)
        for k in range(first + 1, first + n):
            self._lib.llama_memory_seq_cp(memory, first, k, -1, -1)

    def _eval_tail(self, prompt: list[int], start: int, seq_id: int) -> None:
        """Decode prompt[start:] into `seq_id`, in chunks of the batch size; logits for the last token only."""
        step = self.llm.n_batch
        for chunk_start in range(start, len(prompt), step):
            chunk = prompt[chunk_start:chunk_start + step]
            last = chunk_start + len(chunk) == len(prompt)
            self._fill(self.batch, [(token, chunk_start + i, seq_id, last and i == len(chunk) - 1)
                                    for i, token in enumerate(chunk)])
            self._decode(len(chunk))

    def _decode_step(self, live: list[_Seq]) -> None:
        self._fill(self.batch, [(seq.tokens[-1], seq.position, seq.seq_id, True) for seq in live])
        self._decode(len(live))
        for seq in live:
            seq.position += 1

    @staticmethod
    def _fill(batch, entries: list[tuple[int, int, int, bool]]) -> None:
        """(token, position, sequence, wants logits) per batch slot."""
        batch.n_tokens = len(entries)
        for i, (token, position, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = int(logits)

    def _decode(self, n_tokens: int) -> None:
        code = self._lib.llama_decode(self.llm._ctx.ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} on a batch of {n_tokens} tokens")

    def _draw(self, seq: _Seq, index: int) -> int:
        return int(self._lib.llama_sampler_sample(seq.sampler, self.llm._ctx.ctx, index))

    def _take(self, seq: _Seq, token: int, max_tokens: int, stop: Sequence[str]) -> None:
        """Append a drawn token, or finish the sequence: end of text, a stop string, or the token limit."""
        if token == self.eos or self._lib.llama_vocab_is_eog(self.llm._model.vocab, token):
            seq.finish = "stop"
            return
        seq.tokens.append(token)
        seq.text = self.llm.detokenize(seq.tokens).decode("utf-8", errors="ignore") if stop else ""
        for s in stop:
            cut = seq.text.find(s)
            if cut >= 0:
                seq.text, seq.finish = seq.text[:cut], "stop"
                return
        if len(seq.tokens) >= max_tokens:
            seq.finish = "length"

    def _release(self, prompt_len: int) -> None:
        """Drop every candidate's cells; sequence 0 keeps the first prompt, so the next call can reuse it."""
        memory = self._memory
        for k in range(1, MAX_SEQUENCES):
            self._lib.llama_memory_seq_rm(memory, k, -1, -1)
        self._lib.llama_memory_seq_rm(memory, 0, prompt_len, -1)
        self.llm.n_tokens = prompt_len
        self.llm._requires_eval = True
