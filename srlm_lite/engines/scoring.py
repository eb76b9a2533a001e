"""Per-token log-probabilities of a continuation under llama.cpp, in one multi-token decode per chunk.

The prompt is evaluated into sequence 0 reusing the cached prefix (so a judge rubric or a chat header is not
recomputed); the continuation's tokens are then decoded with logits requested at every position, read with
`llama_get_logits_ith`, and removed from the cache again, so the next call can reuse the prompt."""

from __future__ import annotations

import numpy as np

from .prefix import eval_reusing_prefix


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits = logits - logits.max()
    return logits - np.log(np.exp(logits).sum())


class TailScorer:
    """Scores continuations on a `llama_cpp.Llama` (sequence 0 of its context)."""

    def __init__(self, llm):
        import llama_cpp

        self.llm = llm
        self._lib = llama_cpp
        self.batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)

    def close(self) -> None:
        if self.batch is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None

    def __del__(self):
        self.close()

    def logprobs(self, prompt: list[int], tail: list[int]) -> list[float]:
        """log p(tail[i] | prompt, tail[:i]) for every i."""
        if not tail:
            return []
        if len(prompt) + len(tail) > self.llm.n_ctx():
            raise ValueError(f"{len(prompt)} + {len(tail)} tokens do not fit the context of {self.llm.n_ctx()}")
        llm = self.llm
        eval_reusing_prefix(llm, prompt)
        vocab = llm.n_vocab()
        found = [float(log_softmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,)))[tail[0]])]
        try:
            found += self._decode_tail(prompt, tail, vocab)
        finally:
            self._lib.llama_memory_seq_rm(self._lib.llama_get_memory(llm._ctx.ctx), 0, len(prompt), -1)
            llm.n_tokens = len(prompt)
            llm._requires_eval = True
        return found

    def _decode_tail(self, prompt: list[int], tail: list[int], vocab: int) -> list[float]:
        found, step, ctx = [], self.llm.n_batch, self.llm._ctx.ctx
        inputs = tail[:-1]
        for start in range(0, len(inputs), step):
            chunk = inputs[start:start + step]
            self.batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                self.batch.token[i] = token
                self.batch.pos[i] = len(prompt) + start + i
                self.batch.n_seq_id[i] = 1
                self.batch.seq_id[i][0] = 0
                self.batch.logits[i] = 1
            code = self._lib.llama_decode(ctx, self.batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code} on a batch of {len(chunk)} tokens")
            for i in range(len(chunk)):
                row = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx, i), shape=(vocab,))
                found.append(float(log_softmax(row)[tail[start + i + 1]]))
        return found
