"""A GGUF as a Hugging Face / mlx-lm model folder: config.json, model.safetensors in Hugging Face's layout (Q/K rows
un-permuted, Gemma's norm offset removed) and the tokenizer, so `mlx_lm.load` / `mlx_lm.generate` / `mlx_lm.server`
run the same model srlm-lite trains. The tokenizer is rebuilt from the GGUF's byte-level BPE vocabulary (the kind
SmolLM2, Qwen and Llama 3 use); SentencePiece vocabularies (Gemma) are not converted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .architectures import architecture, unpermute_qk
from .gguf import UnsupportedModelError, inspect_gguf, read_float_tensors
from .mlx_model import mlx_name

HF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                    "gemma3": "Gemma3ForCausalLM", "phi3": "Phi3ForCausalLM"}


def gguf_to_hf_folder(gguf_path: str | Path, out_dir: str | Path, *, chat_template: str | None = None) -> Path:
    """Write the model folder of `gguf_path` into `out_dir` (a temporary folder renamed at the end)."""
    info = inspect_gguf(gguf_path)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_tokenizer(gguf_path, tmp, chat_template=chat_template)
        (tmp / "config.json").write_text(json.dumps(hf_config(info), indent=2) + "\n")
        save_hf_weights(hf_weights(info), tmp / "model.safetensors")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def hf_config(info) -> dict:
    """config.json of the model in Hugging Face's layout (mlx-lm reads the same keys)."""
    arch = architecture(info.architecture)
    config = {k: v for k, v in arch.args(info.meta).items() if k != "rope_traditional"}
    config.update(architectures=[HF_ARCHITECTURES[arch.name]], model_type=arch.hf_model_type,
                  tie_word_embeddings=info.tied_embeddings, torch_dtype="float16")
    if arch.name == "qwen2" and info.meta.get("attention_bias") is False:
        config["attention_bias"] = False
    return config


def hf_weights(info) -> dict[str, np.ndarray]:
    """The GGUF's tensors under mlx-lm / Hugging Face names, in Hugging Face's layout, float32."""
    arch = architecture(info.architecture)
    out = {}
    for name, value in read_float_tensors(info.path).items():
        target = mlx_name(name, arch)
        if target is None:
            continue
        if arch.norm_shift and "norm" in target and target.endswith(".weight"):
            value = value - arch.norm_shift
        if arch.qk_permuted and target.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
            heads = info.n_heads if ".q_proj." in target else info.n_kv_heads
            value = unpermute_qk(value, heads)
        out[target] = value
    return out


def save_hf_weights(weights: dict[str, np.ndarray], path: Path) -> None:
    """safetensors: matrices as float16, vectors (norms, biases) as float32."""
    from ..mlx_runtime import mx

    mx.save_safetensors(str(path), {k: mx.array(v.astype(np.float16 if v.ndim >= 2 else np.float32))
                                    for k, v in weights.items()})


def _fields(gguf_path) -> dict:
    from gguf import GGUFReader

    return {k: f.contents() for k, f in GGUFReader(str(gguf_path)).fields.items() if k.startswith("tokenizer.")}


def write_tokenizer(gguf_path, out_dir: Path, *, chat_template: str | None = None) -> None:
    """tokenizer.json + tokenizer_config.json from the GGUF's byte-level BPE vocabulary and its chat template."""
    from transformers import PreTrainedTokenizerFast

    fields = _fields(gguf_path)
    if fields.get("tokenizer.ggml.model") != "gpt2":
        raise UnsupportedModelError(f"{Path(gguf_path).name}: its {fields.get('tokenizer.ggml.model')!r} vocabulary "
                                    f"(SentencePiece) is not converted to a Hugging Face tokenizer; only byte-level "
                                    f"BPE vocabularies are")
    tokens = fields["tokenizer.ggml.tokens"]

    def token(key: str) -> str | None:
        index = fields.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None else None

    wrapper = PreTrainedTokenizerFast(
        tokenizer_object=_bpe(fields), bos_token=token("bos"), eos_token=token("eos"), unk_token=token("unknown"),
        pad_token=token("padding"), chat_template=chat_template or fields.get("tokenizer.chat_template"))
    wrapper.save_pretrained(str(out_dir))


def _bpe(fields: dict):
    """A `tokenizers` byte-level BPE with the GGUF's vocabulary, merges and control tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in fields.get("tokenizer.ggml.merges", [])]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if fields.get("tokenizer.ggml.pre") in ("smollm", "starcoder", "qwen2", "llama-bpe", "deepseek-llm"):
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tk.pre_tokenizer = byte_level
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, kind in zip(tokens, types) if kind == 3])
    return tk
