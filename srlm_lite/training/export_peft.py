"""Our LoRA adapter in PEFT's layout, for servers that load Hugging Face-layout models: `adapter_model.safetensors`
+ `adapter_config.json`, tensors `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (r, in) and
`lora_B.weight` (out, r), alpha = scale x rank (vLLM's `--lora-modules`, PEFT, llama.cpp's `convert_lora_to_gguf.py`).

Our adapters are trained on the GGUF's layout. For llama, llama.cpp's converter permuted the Q/K rows (rope on
interleaved pairs), so the output rows of a q_proj/k_proj LoRA (lora_B) are permuted too; on a Hugging Face base
they go back to its order (`models.export.hf_layout_lora`). mlx-lm's own files for a Hugging Face folder are
`models.export.export_mlx_adapter`'s; the GGUF LoRA llama.cpp applies (llama-cpp-python, and llama-server's
`--lora`, which loads GGUF LoRAs with the same llama.cpp loader) is `adapter.gguf` as trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..mlx_runtime import mx
from .lora import ADAPTER_WEIGHTS, _atomic_write, read_adapter_config

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."


def peft_tensors(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """mlx-lm adapter tensors (already in Hugging Face order) as PEFT's: lora_A (r, in) = lora_a^T, lora_B (out, r) =
    lora_b^T, named `base_model.model.<module>.lora_A.weight`."""
    out = {}
    for name, value in weights.items():
        prefix, leaf = name.rsplit(".", 1)
        if leaf not in ("lora_a", "lora_b"):
            raise ValueError(f"not a LoRA tensor: {name}")
        peft_leaf = "lora_A" if leaf == "lora_a" else "lora_B"
        out[f"{PEFT_PREFIX}{prefix}.{peft_leaf}.weight"] = np.ascontiguousarray(value.T, dtype=np.float32)
    return out


def peft_config(config: dict, n_layers: int, base_model: str = "") -> dict:
    """PEFT's adapter_config.json for our adapter_config.json (alpha = scale x rank: PEFT scales by alpha / r)."""
    p = config["lora_parameters"]
    keys = p.get("keys") or []
    trained = int(config.get("num_layers", n_layers))
    found = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": int(p["rank"]), "lora_alpha": float(p["scale"]) * float(p["rank"]), "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "target_modules": sorted({key.rsplit(".", 1)[-1] for key in keys}),
    }
    if trained < n_layers:  # mlx-lm adapts the top `num_layers` blocks
        found["layers_to_transform"] = list(range(n_layers - trained, n_layers))
    return found


def _hf_weights(adapter_dir: Path, base_model: Path) -> tuple[dict[str, np.ndarray], dict, int]:
    """The adapter's mlx-lm tensors in Hugging Face order (un-permuted where trained on a llama GGUF's layout), its
    config and the base's number of blocks."""
    from ..models.export import hf_layout_lora
    from ..models.gguf import inspect_gguf

    raw = mx.load(str(Path(adapter_dir) / ADAPTER_WEIGHTS))
    weights = {k: np.array(v.astype(mx.float32)) for k, v in raw.items()}
    config = read_adapter_config(adapter_dir)
    if Path(base_model).is_file() and config.get("srlm_layout", "gguf") == "gguf":
        info = inspect_gguf(base_model)
        return hf_layout_lora(weights, info), config, info.n_layers
    with open(Path(base_model) / "config.json") as fh:
        return weights, config, int(json.load(fh)["num_hidden_layers"])


def export_peft(adapter_dir: str | Path, base_model: str | Path, out_dir: str | Path,
                base_name: str = "") -> Path:
    """Write the adapter in `adapter_dir` (ours: mlx-lm files, trained on `base_model`'s layout) as a PEFT adapter
    folder for the Hugging Face layout of that model (`base_name`: its name or path, recorded in the config)."""
    weights, config, n_layers = _hf_weights(Path(adapter_dir), Path(base_model))
    tensors = peft_tensors(weights)
    out = Path(out_dir)
    _atomic_write(out / PEFT_WEIGHTS, lambda tmp: mx.save_safetensors(
        tmp, {k: mx.array(v) for k, v in tensors.items()}, metadata={"format": "pt"}))
    text = json.dumps(peft_config(config, n_layers, base_name), indent=2) + "\n"
    _atomic_write(out / PEFT_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return out
