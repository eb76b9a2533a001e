"""N continuations of one prompt decoded together: llama.cpp's multi-sequence batch API, the prompt's KV shared.

The prompt is evaluated once (reusing whatever prefix the cache already holds) into sequence 0 and its cells
are shared with sequences 1..N-1 (`llama_memory_seq_cp` on a unified KV cache tags the same cells, nothing is
copied). Then every decode step is ONE `llama_decode` of N tokens, one per live sequence, instead of N decodes
of one token. Each sequence has its own sampler chain -- the chain llama-cpp-python builds for
`create_completion` (top-p, then temperature, then a seeded draw) -- so candidate k with seed s_k is drawn from
exactly the distribution the sequential path draws from with s_k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .base import Completion
from .llama_cpp import eval_reusing_prefix

MAX_SEQUENCES = 16  # n_seq_max of the context: the most candidates decoded together


@dataclass
class _Seq:
    sampler: object
    tokens: list[int]
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
    """Decodes up to MAX_SEQUENCES continuations of one prompt together on a `llama_cpp.Llama` whose context was
    made with n_seq_max >= MAX_SEQUENCES and a unified KV cache (see `load_llama(multi_sequence=True)`)."""

    def __init__(self, llm, eos_token_id: int):
        import llama_cpp

        self.llm = llm
        self.eos = eos_token_id
        self.batch = llama_cpp.llama_batch_init(MAX_SEQUENCES, 0, 1)
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
        if not 1 <= len(seeds) <= MAX_SEQUENCES:
            raise ValueError(f"between 1 and {MAX_SEQUENCES} seeds per call, got {len(seeds)}")
        n_ctx = self.llm.n_ctx()
        max_tokens = min(max_tokens, (n_ctx - len(prompt)) // len(seeds))
        if max_tokens < 1:
            raise ValueError(f"prompt of {len(prompt)} tokens and {len(seeds)} continuations do not fit the context "
                             f"of {n_ctx}")
        seqs = [_Seq(sampler_chain(temperature, top_p, seed), []) for seed in seeds]
        try:
            self._eval_prompt(prompt, len(seeds))
            for seq in seqs:
                self._take(seq, self._draw(seq, -1), max_tokens, stop)
            position = len(prompt)
            while live := [(k, s) for k, s in enumerate(seqs) if s.finish is None]:
                self._decode_step(live, position)
                for index, (_, seq) in enumerate(live):
                    self._take(seq, self._draw(seq, index), max_tokens, stop)
                position += 1
        finally:
            for seq in seqs:
                self._lib.llama_sampler_free(seq.sampler)
            self._release(len(prompt), len(seeds))
        return [Completion(text=s.text if stop else self.llm.detokenize(s.tokens).decode("utf-8", errors="ignore"),
                           n_tokens=len(s.tokens), finish_reason=s.finish) for s in seqs]

    def _eval_prompt(self, prompt: list[int], n: int) -> None:
        """Prompt into sequence 0 (reusing the cached prefix), then shared with sequences 1..n-1."""
        memory = self._memory
        for k in range(1, MAX_SEQUENCES):
            self._lib.llama_memory_seq_rm(memory, k, -1, -1)
        eval_reusing_prefix(self.llm, prompt)
        for k in range(1, n):
            self._lib.llama_memory_seq_cp(memory, 0, k, -1, -1)

    def _decode_step(self, live: list[tuple[int, _Seq]], position: int) -> None:
        batch = self.batch
        batch.n_tokens = len(live)
        for i, (k, seq) in enumerate(live):
            batch.token[i] = seq.tokens[-1]
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = k
            batch.logits[i] = 1
        code = self._lib.llama_decode(self.llm._ctx.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} on a batch of {len(live)} sequences")

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

    def _release(self, prompt_len: int, n: int) -> None:
        """Drop the candidates' cells; sequence 0 keeps the prompt, so the next call can reuse it as a prefix."""
        memory = self._memory
        for k in range(1, n):
            self._lib.llama_memory_seq_rm(memory, k, -1, -1)
        self._lib.llama_memory_seq_rm(memory, 0, prompt_len, -1)
        self.llm.n_tokens = prompt_len
        self.llm._requires_eval = True
