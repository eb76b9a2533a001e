"""Engine parity: per-token log-probs of the MLX trainer vs the llama.cpp sampler on the same GGUF (+ adapter)."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..engines.llama_cpp import load_llama
from ..engines.serving import served_model
from ..mlx_runtime import mx
from ..runs import GGUF_ADAPTER
from ..training.lora import ADAPTER_WEIGHTS, export_gguf_lora, load_adapter
from .mlx_model import load_mlx_model
from .tokenizer import ChatTokenizer

PARITY_TEXTS: list[list[dict]] = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris. It lies on the Seine river in the north "
                                         "of the country and is famous for the Eiffel Tower and the Louvre."},
    ],
    [
        {"role": "user", "content": "Give me two tips for sleeping better."},
        {"role": "assistant", "content": "First, go to bed and wake up at the same time every day, even at "
                                         "weekends. Second, keep your bedroom dark, quiet and cool, and put "
                                         "screens away an hour before sleep."},
    ],
    [
        {"role": "user", "content": "Write a Python function that adds two numbers."},
        {"role": "assistant", "content": "Here is a simple function:\n\n```python\ndef add(a, b):\n    "
                                         "return a + b\n```\n\nCalling add(2, 3) returns 5."},
    ],
]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def mlx_token_logprobs(model, tokens: list[int]) -> np.ndarray:
    """log p(t_i | t_<i) for i >= 1 under an MLX model, as float64."""
    logits = model(mx.array([tokens]))[0, :-1].astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    picked = mx.take_along_axis(logp, mx.array(tokens[1:])[:, None], axis=-1)[:, 0]
    return np.array(picked, dtype=np.float64)


@contextmanager
def _llama(gguf_path: str | Path, lora_path: str | Path | None, n_ctx: int, serve: str) -> Iterator[object]:
    llm = load_llama(served_model(gguf_path, serve), logits_all=True, n_ctx=n_ctx, lora_path=lora_path)
    try:
        yield llm
    finally:
        llm.close()


def _llama_logprobs(llm, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    logp = _log_softmax(np.asarray(llm.scores[: len(tokens) - 1]))
    return logp[np.arange(len(tokens) - 1), tokens[1:]]


def llama_token_logprobs(gguf_path: str | Path, tokens: list[int], lora_path: str | Path | None = None,
                         n_ctx: int = 512, serve: str = "f16") -> np.ndarray:
    """log p(t_i | t_<i) for i >= 1 under llama.cpp (optionally with a GGUF LoRA adapter), as float64; `serve`
    picks the weights llama.cpp loads, as the sampler does (`serving.served_model`)."""
    return llama_logprobs_many(gguf_path, [tokens], lora_path, n_ctx, serve)[0]


def parity_tokens(gguf_path: str | Path) -> list[list[int]]:
    """The PARITY_TEXTS rendered with the GGUF's template and tokenized by llama.cpp."""
    tok = ChatTokenizer.from_gguf(gguf_path)
    return [tok.encode(tok.render(messages, add_generation_prompt=False)) for messages in PARITY_TEXTS]


def _gguf_adapter(adapter_dir: Path, tmp_dir: str) -> Path:
    """adapter_dir/adapter.gguf if it is current, else a fresh export into tmp_dir."""
    existing = adapter_dir / GGUF_ADAPTER
    weights = adapter_dir / ADAPTER_WEIGHTS
    if existing.is_file() and existing.stat().st_mtime >= weights.stat().st_mtime:
        return existing
    return export_gguf_lora(adapter_dir, Path(tmp_dir) / GGUF_ADAPTER)


def llama_logprobs_many(gguf_path: str | Path, seqs: list[list[int]], lora_path: str | Path | None = None,
                        n_ctx: int = 512, serve: str = "f16") -> list[np.ndarray]:
    """llama_token_logprobs for several sequences with one llama.cpp instance."""
    with _llama(gguf_path, lora_path, max(n_ctx, max(map(len, seqs))), serve) as llm:
        return [_llama_logprobs(llm, s) for s in seqs]


def parity_logprobs(gguf_path: str | Path, adapter_dir: str | Path | None = None,
                    model=None, serve: str = "f16") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-text token log-probs of PARITY_TEXTS from MLX and from llama.cpp (base, or base + adapter), llama.cpp
    serving the weights as the sampler does (`serve`).

    `model` reuses an already loaded MLX model; it must already carry the adapter when adapter_dir is given.
    """
    seqs = parity_tokens(gguf_path)
    if model is None:
        model = load_mlx_model(gguf_path)
        if adapter_dir is not None:
            load_adapter(model, adapter_dir)
    mlx_lp = [mlx_token_logprobs(model, s) for s in seqs]
    with tempfile.TemporaryDirectory() as tmp:
        lora = _gguf_adapter(Path(adapter_dir), tmp) if adapter_dir is not None else None
        llama_lp = llama_logprobs_many(gguf_path, seqs, lora, serve=serve)
    return mlx_lp, llama_lp


def summarize_parity(mlx_lp: list[np.ndarray], llama_lp: list[np.ndarray]) -> dict:
    diff = np.abs(np.concatenate(mlx_lp) - np.concatenate(llama_lp))
    return {
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff": float(diff.max()),
        "n_tokens": int(diff.size),
        "logp_sum_mlx": float(sum(x.sum() for x in mlx_lp)),
        "logp_sum_llama": float(sum(x.sum() for x in llama_lp)),
    }


def parity_report(gguf_path: str | Path, adapter_dir: str | Path | None = None, model=None,
                  serve: str = "f16") -> dict:
    """Compare MLX and llama.cpp per-token log-probs on PARITY_TEXTS; a mean_abs_diff above ~0.1 means a bug."""
    report = summarize_parity(*parity_logprobs(gguf_path, adapter_dir, model, serve))
    report["adapter"] = str(adapter_dir) if adapter_dir is not None else None
    report["serve"] = serve
    return report
