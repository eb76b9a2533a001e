"""mlx-lm compatible LoRA adapters: attach, save, load, and export as a llama.cpp GGUF LoRA adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..mlx_runtime import mx, nn, tree_flatten
from ..records import atomic_path
from ..models.architectures import LLAMA_LORA_KEYS, architecture

DEFAULT_KEYS = LLAMA_LORA_KEYS  # the seven linear layers of a llama block
ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def attach_lora(model: nn.Module, rank: int = 8, scale: float = 20.0, dropout: float = 0.0,
                num_layers: int = -1, keys: tuple[str, ...] | list[str] = DEFAULT_KEYS) -> dict:
    """Turn the chosen linear layers into LoRA layers (only lora_a/lora_b trainable); return adapter_config."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if num_layers == 0:
        raise ValueError("num_layers must be positive, or -1 for all layers")
    n_layers = len(model.layers) if num_layers < 0 else min(num_layers, len(model.layers))
    params = {"rank": int(rank), "scale": float(scale), "dropout": float(dropout), "keys": list(keys)}
    model.freeze()
    linear_to_lora_layers(model, n_layers, params)
    model.freeze()
    model.unfreeze(keys=["lora_a", "lora_b"], strict=False)
    return {"fine_tune_type": "lora", "num_layers": n_layers, "lora_parameters": params}


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The trainable (LoRA) parameters by their flat mlx-lm names."""
    return dict(tree_flatten(model.trainable_parameters()))


def _atomic_write(target: Path, write) -> Path:
    """`write(tmp)` to a temporary file beside `target`, then fsync, rename and fsync the folder (a full disk raises
    DiskFullError and leaves nothing behind; see `records.atomic_path`)."""
    with atomic_path(target, suffix=target.suffix or ".tmp") as tmp:
        write(str(tmp))
    return target


def save_adapter(model: nn.Module, adapter_dir: str | Path, config: dict) -> Path:
    """Write adapters.safetensors + adapter_config.json (mlx-lm layout) atomically; return the directory."""
    adapter_dir = Path(adapter_dir)
    weights = adapter_weights(model)
    if not weights:
        raise ValueError("The model has no trainable LoRA parameters; call attach_lora first.")
    mx.eval(weights)
    _atomic_write(adapter_dir / ADAPTER_WEIGHTS, lambda tmp: mx.save_safetensors(tmp, weights))

    def write_config(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(config, indent=2) + "\n")

    _atomic_write(adapter_dir / ADAPTER_CONFIG, write_config)
    return adapter_dir


def read_adapter_config(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"No {ADAPTER_CONFIG} in {adapter_dir}")
    return json.loads(path.read_text())


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> dict:
    """Attach LoRA layers as the adapter's config says and load its weights (strict on names and shapes)."""
    config = read_adapter_config(adapter_dir)
    if config.get("fine_tune_type", "lora") != "lora":
        raise ValueError(f"Only LoRA adapters are supported, not {config['fine_tune_type']!r}")
    p = config["lora_parameters"]
    attach_lora(model, rank=p["rank"], scale=p["scale"], dropout=p.get("dropout", 0.0),
                num_layers=config["num_layers"], keys=p.get("keys") or DEFAULT_KEYS)
    weights = mx.load(str(Path(adapter_dir) / ADAPTER_WEIGHTS))
    expected = adapter_weights(model)
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise ValueError(f"Adapter {adapter_dir} does not match the model: missing {missing[:3]}, extra {extra[:3]}")
    model.load_weights(list(weights.items()), strict=False)
    mx.eval(model.parameters())
    return config


def _gguf_lora_tensors(weights: dict[str, np.ndarray], arch_name: str = "llama") -> dict[str, np.ndarray]:
    """Rename model.layers.N.<key>.lora_{a,b} to blk.N.<gguf>.weight.lora_{a,b} (the base architecture's GGUF names)
    and transpose to llama.cpp's shapes."""
    arch = architecture(arch_name)
    out = {}
    for name, value in weights.items():
        prefix, leaf = name.rsplit(".", 1)
        parts = prefix.split(".")
        if parts[:2] != ["model", "layers"] or leaf not in ("lora_a", "lora_b"):
            raise ValueError(f"Cannot export adapter tensor {name} to GGUF")
        part = arch.gguf_lora_name(".".join(parts[3:]))
        out[f"blk.{parts[2]}.{part}.weight.{leaf}"] = np.ascontiguousarray(value.T, dtype=np.float32)
    return out


def export_gguf_lora(adapter_dir: str | Path, out_path: str | Path, base_info=None) -> Path:
    """Write the saved MLX adapter as a llama.cpp GGUF LoRA (alpha = scale * rank; lora_a (r,in), lora_b (out,r))."""
    import gguf

    config = read_adapter_config(adapter_dir)
    p = config["lora_parameters"]
    raw = mx.load(str(Path(adapter_dir) / ADAPTER_WEIGHTS))
    arch = getattr(base_info, "architecture", "llama")
    tensors = _gguf_lora_tensors({k: np.array(v.astype(mx.float32)) for k, v in raw.items()}, arch)

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(p["scale"]) * float(p["rank"]))
        if base_info is not None:
            writer.add_string("general.name", f"{base_info.name} LoRA")
        for name in sorted(tensors):
            writer.add_tensor(name, tensors[name])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return _atomic_write(Path(out_path), write)
