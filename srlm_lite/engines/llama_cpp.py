"""llama.cpp engine (llama-cpp-python): sampling, next-token log-probs with KV prefix reuse, LoRA adapters."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..models.gguf import UnsupportedModelError
from ..models.tokenizer import ChatTokenizer
from .base import SEQUENCES_PER_BATCH, Completion, complete_each
from .multiseq import MultiSequenceSampler
from .prefix import eval_reusing_prefix, pack_units
from .scoring import TailScorer
from .serving import served_model


def llama_has_amx() -> bool:
    """True when llama.cpp's CPU backend was built with its AMX kernels."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextlib.contextmanager
def _extra_buffers_off():
    """llama-cpp-python has no flag for llama.cpp's extra (AMX / repacked) weight buffers: switch them off at load.

    On this project's x86_64 machine the AMX kernels segfault in llama_decode on any batch of more than one
    token (llama.cpp issue #20824); without them it runs at full speed.
    """
    import llama_cpp.llama as llama_module

    original = llama_module.llama_cpp.llama_model_default_params

    def patched():
        params = original()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = patched
    try:
        yield
    finally:
        llama_module.llama_cpp.llama_model_default_params = original


@contextlib.contextmanager
def _multi_sequence_context(n_seq_max: int):
    """llama-cpp-python has no flag for n_seq_max either: a context for `n_seq_max` sequences sharing one KV
    cache (unified: every sequence may use the whole context, and a shared prompt's cells are shared)."""
    import llama_cpp.llama as llama_module

    original = llama_module.llama_cpp.llama_context_default_params

    def patched():
        params = original()
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        return params

    llama_module.llama_cpp.llama_context_default_params = patched
    try:
        yield
    finally:
        llama_module.llama_cpp.llama_context_default_params = original


def load_llama(
    model_path: str | Path,
    *,
    lora_path: str | Path | None = None,
    n_ctx: int = 2048,
    n_threads: int = 0,
    n_batch: int = 512,
    logits_all: bool = False,
    seed: int = 0,
    n_seq_max: int = 1,
    flash_attn: bool = True,
):
    """A llama_cpp.Llama with every default that hurts set explicitly (context, threads, seed, logging).

    Flash attention is on (llama-cpp-python's default is off): it skips the KV cells a sequence may not see, which
    the candidates of several prompts in one unified cache are to each other (measured: 16 candidates decoded
    together 270 vs 217 tokens/s), and it is no slower for one sequence.

    On CPUs with AMX the extra buffer types are off (see `_extra_buffers_off`); SRLM_LLAMA_EXTRA_BUFTS=1 keeps them.
    `n_seq_max` > 1 makes a context for multi-sequence batches (see `multiseq.py`).
    """
    from llama_cpp import Llama

    threads = n_threads or os.cpu_count() or 1
    keep = os.environ.get("SRLM_LLAMA_EXTRA_BUFTS", "") == "1"
    guard = _extra_buffers_off() if (llama_has_amx() and not keep) else contextlib.nullcontext()
    multi = _multi_sequence_context(n_seq_max) if n_seq_max > 1 else contextlib.nullcontext()
    with guard, multi:
        return Llama(
            model_path=str(model_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits_all,
            seed=seed,
            flash_attn=flash_attn,
            verbose=False,
        )


class LlamaCppEngine:
    """Samples and scores with one llama.cpp model (optionally with a GGUF LoRA adapter applied at run time)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        lora_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_batch: int = 512,
        batched: bool = True,
        serve: str = "f16",
        flash_attn: bool = True,
        chat_template: str | None = None,
    ):
        self.model_path = Path(model_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.served_path = served_model(self.model_path, serve)
        self.llm = load_llama(self.served_path, lora_path=lora_path, n_ctx=n_ctx, n_threads=n_threads,
                              n_batch=n_batch, n_seq_max=SEQUENCES_PER_BATCH if batched else 1, flash_attn=flash_attn)
        self.tokenizer = ChatTokenizer.from_llama(self.llm, model_path, chat_template)
        self.model_id = self.model_path.name + (f"+{self.lora_path}" if self.lora_path else "")
        self._multi = MultiSequenceSampler(self.llm, self.tokenizer.eos_token_id) if batched else None
        self._scorer: TailScorer | None = None

    @classmethod
    def open(cls, model, options) -> "LlamaCppEngine":
        """The engine registry's constructor: `model` a ModelSpec, `options` an EngineOptions."""
        from ..models.source import check_model
        from ..models.tokenizer import read_chat_template

        if Path(model.base).is_dir():
            check_model(Path(model.base))
            raise UnsupportedModelError(f"{model.base} is a model folder: llama.cpp runs GGUF files; use --backend mlx "
                                        f"(or convert it with llama.cpp's convert_hf_to_gguf.py)")
        return cls(model.base, lora_path=model.lora_gguf, n_ctx=options.n_ctx, n_threads=options.n_threads,
                   n_batch=options.n_batch, batched=options.batched, serve=options.serve,
                   flash_attn=options.flash_attn, chat_template=read_chat_template(model.chat_template))

    def chat_prompt(self, user: str) -> str:
        return self.tokenizer.prompt_text(user)

    def render_chat(self, messages: list[dict]) -> str:
        """A whole conversation templated, ending with the assistant's generation prompt."""
        return self.tokenizer.render(messages, add_generation_prompt=True)

    @property
    def context_length(self) -> int:
        return self.llm.n_ctx()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of plain text (no BOS, control tokens not parsed): e.g. to count generated tokens."""
        return self.tokenizer.encode(text, special=False, add_bos=False)

    def complete(
        self, prompt: str, *, max_tokens: int, temperature: float, top_p: float, seed: int, stop: Sequence[str] = ()
    ) -> Completion:
        tokens = self.encode(prompt)
        budget = self.llm.n_ctx() - len(tokens)
        if budget < 1:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit the context of {self.llm.n_ctx()}")
        out = self.llm.create_completion(
            prompt=tokens,
            max_tokens=min(max_tokens, budget),
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            seed=seed,
            stop=[self.tokenizer.eos_token, *stop],
        )
        choice = out["choices"][0]
        finish = "length" if choice["finish_reason"] == "length" else "stop"
        return Completion(text=choice["text"], n_tokens=out["usage"]["completion_tokens"], finish_reason=finish)

    def complete_n(
        self, prompt: str, *, seeds: Sequence[int], max_tokens: int, temperature: float, top_p: float,
        stop: Sequence[str] = (),
    ) -> list[Completion]:
        """One completion per seed. Batched engines decode them together (one llama_decode per step for all, the
        prompt evaluated once); otherwise one `complete` after another. Same distribution either way."""
        if len(seeds) == 1:
            return complete_each(self, prompt, seeds=seeds, max_tokens=max_tokens, temperature=temperature,
                                 top_p=top_p, stop=stop)
        return self.complete_many([(prompt, seeds)], max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop)[0]

    def complete_many(
        self, requests: Sequence[tuple[str, Sequence[int]]], *, max_tokens: int, temperature: float, top_p: float,
        stop: Sequence[str] = (),
    ) -> list[list[Completion]]:
        """For each (prompt, seeds), one completion per seed. Batched engines decode the candidates of as many
        prompts together as fit MAX_SEQUENCES sequences and the context; otherwise one `complete` after another."""
        settings = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop)
        if self._multi is None:
            return [complete_each(self, prompt, seeds=seeds, **settings) for prompt, seeds in requests]
        limit = SEQUENCES_PER_BATCH
        units = [(r, self.encode(prompt), list(seeds[s:s + limit]))
                 for r, (prompt, seeds) in enumerate(requests) for s in range(0, len(seeds), limit)]
        out: list[list[Completion]] = [[] for _ in requests]
        for group in pack_units(units, limit, self.llm.n_ctx(), max_tokens):
            sampled = self._multi.sample_groups([tokens for _, tokens, _ in group], [s for _, _, s in group],
                                                **settings)
            for (r, _, _), completions in zip(group, sampled):
                out[r] += completions
        return out

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """log p of each token of `continuation` (plain text, no control tokens) after the raw text `prompt`."""
        if self._scorer is None:
            self._scorer = TailScorer(self.llm)
        return self._scorer.logprobs(self.encode(prompt), self.encode_text(continuation))

    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> dict[str, float]:
        ids = {c: self._single_token(c) for c in candidates}
        logprobs = self._last_logprobs(self.encode(prompt))
        return {c: float(logprobs[i]) for c, i in ids.items()}

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer.encode(text, special=False, add_bos=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens in this vocabulary; a score candidate must be one")
        return ids[0]

    def _last_logprobs(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens`, reusing the KV cache of the longest prefix already evaluated; log-softmax of the last."""
        llm = self.llm
        eval_reusing_prefix(llm, tokens)
        llm._requires_eval = True  # our decode may leave logits the sampler must not take as its own
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        logits -= logits.max()
        return logits - np.log(np.exp(logits).sum())
