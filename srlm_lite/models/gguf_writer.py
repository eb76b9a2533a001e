"""Write GGUF files llama.cpp loads: a model's tensors under the GGUF names of its architecture, the architecture's
metadata, and the tokenizer (and any other) fields copied from an existing GGUF.

Used to fuse a LoRA into a model (`export --format gguf`) and, in the tests, to turn tiny random models of every
architecture into GGUFs. The tensors go in as the mlx-lm / Hugging Face names; `to_gguf_tensors` applies what
llama.cpp's own converter applies (llama: Q/K rows permuted for its rope; gemma3: 1 added to norm weights)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .architectures import GLOBAL_NAMES, Architecture, architecture, permute_qk

TOKENIZER_FIELDS = "tokenizer."


def to_gguf_tensors(weights: dict[str, np.ndarray], arch: Architecture, meta: dict, *,
                    hf_layout: bool) -> dict[str, np.ndarray]:
    """{GGUF name: array} from mlx-lm parameter names. `hf_layout`: the Q/K rows are in Hugging Face order (a model
    folder) and get llama.cpp's permutation; a model built from a GGUF is already in llama.cpp's order."""
    parts = {target: part for part, target in arch.block_names.items()}
    globals_ = {target: part for part, target in GLOBAL_NAMES.items()}
    out = {}
    for name, value in weights.items():
        prefix, leaf = name.rsplit(".", 1)
        if prefix.startswith("model.layers."):
            layer, module = prefix[len("model.layers."):].split(".", 1)
            gguf_name = f"blk.{layer}.{parts[module]}.{leaf}"
        elif prefix in globals_:
            gguf_name = f"{globals_[prefix]}.{leaf}"
        else:
            raise ValueError(f"{arch.name}: no GGUF name for {name}")
        value = np.asarray(value, dtype=np.float32)
        if arch.norm_shift and "norm" in prefix and leaf == "weight":
            value = value + arch.norm_shift
        if hf_layout and arch.qk_permuted and module_is(prefix, ("q_proj", "k_proj")):
            heads = meta["head_count"] if prefix.endswith("q_proj") else meta["head_count_kv"]
            value = permute_qk(value, heads)
        out[gguf_name] = value
    return out


def module_is(prefix: str, names: tuple[str, ...]) -> bool:
    return prefix.rsplit(".", 1)[-1] in names


def write_gguf(path: str | Path, arch_name: str, meta: dict, tensors: dict[str, np.ndarray], *,
               fields_from: str | Path | None = None, keep: Callable[[str], bool] | None = None,
               name: str = "", f16: bool = True, architecture_fields: bool = True) -> Path:
    """Write `tensors` (GGUF names, float) with `arch_name`'s metadata (unless `architecture_fields` is False: then
    the copied fields must hold it); fields of `fields_from` that `keep` accepts (default: the tokenizer's) are
    copied. 2-D tensors are stored as F16 when `f16`, else F32; written to a temporary name and renamed."""
    import gguf

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    try:
        if architecture_fields:
            _architecture_fields(writer, architecture(arch_name), meta, name or path.stem)
        if fields_from is not None:
            copy_fields(writer, fields_from, keep or (lambda key: key.startswith(TOKENIZER_FIELDS)))
        for tensor_name in sorted(tensors):
            data = np.ascontiguousarray(tensors[tensor_name], dtype=np.float32)
            writer.add_tensor(tensor_name, data.astype(np.float16) if f16 and data.ndim == 2 else data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _architecture_fields(writer, arch: Architecture, meta: dict, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(int(meta["context_length"]))
    writer.add_embedding_length(int(meta["embedding_length"]))
    writer.add_block_count(int(meta["block_count"]))
    writer.add_feed_forward_length(int(meta["feed_forward_length"]))
    writer.add_head_count(int(meta["head_count"]))
    writer.add_head_count_kv(int(meta["head_count_kv"]))
    writer.add_key_length(int(meta["key_length"]))
    writer.add_value_length(int(meta["key_length"]))
    writer.add_rope_freq_base(float(meta["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(meta["rms_eps"]))
    if arch.name in ("llama", "phi3"):
        writer.add_rope_dimension_count(int(meta["key_length"]))
    if arch.name == "llama":
        writer.add_vocab_size(int(meta["vocab_size"]))
    if arch.name == "gemma3" and meta.get("sliding_window"):
        writer.add_sliding_window(int(meta["sliding_window"]))


def copy_fields(writer, source: str | Path, keep: Callable[[str], bool]) -> list[str]:
    """Copy the key-value fields of the GGUF `source` whose names `keep` accepts; their names."""
    from gguf import GGUFReader, GGUFValueType

    copied = []
    for key, field in GGUFReader(str(source)).fields.items():
        if key.startswith("GGUF.") or not keep(key):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)
        copied.append(key)
    return copied


def meta_from_args(args) -> dict:
    """The normalized metadata (see `gguf.GGUFInfo.meta`) of an mlx-lm ModelArgs (a model built in MLX)."""
    head_dim = getattr(args, "head_dim", None) or args.hidden_size // args.num_attention_heads
    return {"embedding_length": args.hidden_size, "block_count": args.num_hidden_layers,
            "feed_forward_length": args.intermediate_size, "head_count": args.num_attention_heads,
            "head_count_kv": getattr(args, "num_key_value_heads", None) or args.num_attention_heads,
            "key_length": head_dim, "vocab_size": args.vocab_size,
            "context_length": getattr(args, "max_position_embeddings", None) or 2048,
            "rope_theta": float(getattr(args, "rope_theta", 10000.0) or 10000.0), "rms_eps": args.rms_norm_eps,
            "sliding_window": getattr(args, "sliding_window", None)}
