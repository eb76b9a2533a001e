"""Tiny random models of every architecture, written as a model folder (Hugging Face layout) and as a GGUF (the
layout llama.cpp's converter writes), both with the embedded SmolLM2's tokenizer, so both engines can load them."""

from __future__ import annotations

import json
from pathlib import Path

from srlm_lite.mlx_runtime import mx, tree_flatten
from srlm_lite.models.architectures import architecture
from srlm_lite.models.gguf_writer import meta_from_args, to_gguf_tensors, write_gguf
from srlm_lite.models.hf_export import HF_ARCHITECTURES, write_tokenizer
from srlm_lite.models.mlx_model import model_class
from srlm_lite.training.dpo import TokenizedPair

VOCAB = 49152  # the embedded SmolLM2's, whose tokenizer the tiny models borrow
COMMON = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
              rms_norm_eps=1e-5, vocab_size=VOCAB, max_position_embeddings=2048)
ARGS = {
    "llama": dict(model_type="llama", num_hidden_layers=2, head_dim=16, rope_theta=10000.0,
                  tie_word_embeddings=True),
    "qwen2": dict(model_type="qwen2", num_hidden_layers=2, rope_theta=1000000.0, tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", num_hidden_layers=2, head_dim=32, rope_theta=1000000.0,
                  tie_word_embeddings=True),
    "gemma3": dict(model_type="gemma3_text", num_hidden_layers=6, head_dim=32, rope_theta=1000000.0,
                   rope_local_base_freq=10000.0, query_pre_attn_scalar=32, sliding_window=512,
                   sliding_window_pattern=6),
    "phi3": dict(model_type="phi3", num_hidden_layers=2, rope_theta=10000.0, tie_word_embeddings=False,
                 original_max_position_embeddings=2048),
}


def tiny_model(arch_name: str, seed: int = 0):
    """A random mlx-lm model of `arch_name` in Hugging Face layout (float32), with non-trivial norm weights."""
    arch = architecture(arch_name)
    model_cls, args_cls = model_class(arch)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict({**COMMON, **ARGS[arch_name]}))
    params = dict(tree_flatten(model.parameters()))
    for name, value in params.items():
        if "norm" in name:  # 1 (or 0 for Gemma's 1 + w) everywhere would hide a missed norm offset
            params[name] = value + 0.3 * mx.random.normal(value.shape)
        elif name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight"):
            params[name] = 0.1 * mx.random.normal(value.shape)
    model.load_weights(list(params.items()))
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    return model


def write_folder(model, arch_name: str, folder: Path, tokenizer_gguf: Path) -> Path:
    """config.json + model.safetensors (Hugging Face names and layout) + the tokenizer of `tokenizer_gguf`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {**COMMON, **ARGS[arch_name], "architectures": [HF_ARCHITECTURES[arch_name]]}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
    write_tokenizer(tokenizer_gguf, folder)
    return folder


def write_gguf_of(model, arch_name: str, path: Path, tokenizer_gguf: Path) -> Path:
    """The GGUF llama.cpp's converter would write for the model (F32), the tokenizer fields of `tokenizer_gguf`."""
    arch = architecture(arch_name)
    meta = meta_from_args(model.args)
    weights = {k: __import__("numpy").array(v) for k, v in tree_flatten(model.parameters())}
    tensors = to_gguf_tensors(weights, arch, meta, hf_layout=True)
    # (not named after the architecture: llama.cpp gives a model *named* phi3 Phi-3's own special-token rules)
    return write_gguf(path, arch_name, meta, tensors, fields_from=tokenizer_gguf, f16=False,
                      name="srlm-lite tiny random model")


def synthetic_pairs(n: int, rng) -> list[TokenizedPair]:
    """`n` tokenized preference pairs for the tiny models: a prompt (ids 3-59), a chosen answer (ids 60-89) and a
    rejected one (ids 90-127), each of random length, drawn from the numpy Generator `rng`."""
    pairs = []
    for i in range(n):
        prompt = [1] + rng.integers(3, 60, size=int(rng.integers(3, 8))).tolist()
        chosen = rng.integers(60, 90, size=int(rng.integers(3, 10))).tolist() + [2]
        rejected = rng.integers(90, 128, size=int(rng.integers(3, 10))).tolist() + [2]
        pairs.append(TokenizedPair(f"p{i}", prompt + chosen, prompt + rejected, len(prompt), len(prompt)))
    return pairs
