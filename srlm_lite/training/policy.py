"""The policy a training run starts from and what it leaves: base model + LoRA (fresh or M_t's), the tokenizer the
sampler uses, and the adapter saved for both engines (mlx-lm's files, and a GGUF LoRA where the base is a GGUF)."""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..mlx_runtime import mx
from ..models.loading import is_gguf_model, lora_keys_for, mlx_model_for, tokenizer_for
from ..runs import GGUF_ADAPTER, ModelSpec
from .lora import attach_lora, export_gguf_lora, load_adapter, save_adapter


def open_policy(base_model: Path, init_adapter: Path | None, config: TrainConfig, *, seed: int,
                chat_template: str | None = None):
    """(model, tokenizer, adapter config): the MLX model of `base_model` with `init_adapter`'s LoRA (M_t) or a
    fresh LoRA seeded by `seed`, and the tokenizer and chat template the sampler of this model uses."""
    spec = ModelSpec(Path(base_model), None, chat_template=chat_template)
    tokenizer = tokenizer_for(spec)
    mx.random.seed(seed)
    model = mlx_model_for(spec, dequantize=config.dequantize, with_adapter=False)
    if init_adapter:
        lora_config = load_adapter(model, ModelSpec(spec.base, Path(init_adapter)).adapter_dir)
    else:
        lora_config = attach_lora(model, rank=config.lora_rank, scale=config.lora_scale,
                                  num_layers=config.lora_layers, keys=lora_keys_for(spec.base))
    return model, tokenizer, lora_config


def save_policy(model, adapter_dir: Path, lora_config: dict, base_model: Path) -> Path | None:
    """Save the LoRA in mlx-lm's layout; on a GGUF base also as the GGUF LoRA llama.cpp applies (its path)."""
    from ..models.gguf import inspect_gguf

    save_adapter(model, adapter_dir, {**lora_config, "srlm_base_model": str(base_model),
                                      "srlm_layout": "gguf" if is_gguf_model(base_model) else "hf"})
    if not is_gguf_model(base_model):
        return None
    return export_gguf_lora(adapter_dir, adapter_dir / GGUF_ADAPTER, base_info=inspect_gguf(base_model))
