"""Open what a `runs.ModelSpec` names, for MLX and for the trainer: its tokenizer and its MLX model with the adapter.

A GGUF file is tokenized by llama.cpp's own tokenizer (the sampler's) and built into MLX from its tensors; a model
folder is tokenized by its `transformers` tokenizer and loaded as mlx-lm loads it."""

from __future__ import annotations

from pathlib import Path

from .architectures import HF_MODEL_TYPES, LLAMA_LORA_KEYS, architecture
from .gguf import inspect_gguf
from .tokenizer import ChatTokenizer, read_chat_template


def is_gguf_model(base: Path) -> bool:
    return Path(base).is_file()


def tokenizer_for(spec) -> ChatTokenizer:
    """The tokenizer and chat template the sampler and the trainer of `spec` share."""
    template = read_chat_template(spec.chat_template)
    if is_gguf_model(spec.base):
        return ChatTokenizer.from_gguf(spec.base, template)
    from .hf_tokenizer import HFChatTokenizer

    return HFChatTokenizer.from_folder(spec.base, template)


def mlx_model_for(spec, *, dequantize: bool = True, bits: int = 0, with_adapter: bool = True):
    """The frozen MLX model of `spec`'s base, with its adapter applied in-process (LoRA layers loaded)."""
    from ..training.lora import load_adapter
    from .mlx_model import load_mlx_folder, load_mlx_model

    if is_gguf_model(spec.base):
        model = load_mlx_model(spec.base, dequantize=dequantize, bits=bits)
    else:
        model = load_mlx_folder(spec.base, dequantize=dequantize)
    if with_adapter and spec.adapter is not None:
        load_adapter(model, spec.adapter_dir)
    return model


def lora_keys_for(base: Path) -> tuple[str, ...] | None:
    """The linear layers a LoRA adapts in `base`'s architecture (None: mlx-lm's own choice for the model type)."""
    if is_gguf_model(base):
        return architecture(inspect_gguf(base).architecture).lora_keys
    import json

    model_type = json.loads((Path(base) / "config.json").read_text()).get("model_type", "")
    arch = HF_MODEL_TYPES.get(model_type)
    return arch.lora_keys if arch else LLAMA_LORA_KEYS
