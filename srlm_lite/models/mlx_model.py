"""Build an MLX model (mlx-lm's model class of its architecture) from a GGUF's tensors or from a model folder.

A GGUF whose tensors MLX reads natively (F32/F16/BF16/Q4_0/Q4_1/Q8_0) is loaded with `mx.load`, its Q4/Q8 tensors
already in MLX's quantized layout; any other file (K-quants, Q5_x, IQ types) is dequantized with the `gguf`
package. The model keeps the GGUF's layout (llama: Q/K rows as llama.cpp permutes them, hence
`rope_traditional=True`), so a LoRA trained on it is in llama.cpp's layout too.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from ..mlx_runtime import mx, nn
from .architectures import GLOBAL_NAMES, Architecture, architecture
from .gguf import GGUFInfo, inspect_gguf, read_float_tensors, resolve_model_path

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias|scales|biases)$")
_GLOBAL_RE = re.compile(r"^([a-z_]+)\.(weight|bias|scales|biases)$")
MLX_BITS = (0, 4, 8)  # re-quantize dequantized weights to MLX's 4 or 8 bits (0: keep them in float)


def mlx_name(gguf_name: str, arch: Architecture | str = "llama") -> str | None:
    """The mlx-lm parameter name of a GGUF tensor (None for tensors the model class does not use)."""
    arch = architecture(arch) if isinstance(arch, str) else arch
    if match := _BLOCK_RE.match(gguf_name):
        layer, part, leaf = match.groups()
        if part in arch.block_names:
            return f"model.layers.{layer}.{arch.block_names[part]}.{leaf}"
        return None
    if match := _GLOBAL_RE.match(gguf_name):
        part, leaf = match.groups()
        if part in GLOBAL_NAMES:
            return f"{GLOBAL_NAMES[part]}.{leaf}"
    return None


def model_class(arch: Architecture):
    """mlx-lm's (Model, ModelArgs) of an architecture."""
    module = importlib.import_module(arch.module)
    return module.Model, module.ModelArgs


def build_model(info: GGUFInfo):
    """An mlx-lm model of the GGUF's architecture and shapes, random weights."""
    arch = architecture(info.architecture)
    model_cls, args_cls = model_class(arch)
    return model_cls(args_cls.from_dict(arch.args(info.meta)))


def _rename(tensors: dict, arch: Architecture) -> dict:
    renamed = {}
    for name, value in tensors.items():
        target = mlx_name(name, arch)
        if target is None:
            continue
        if arch.norm_shift and "norm" in target and target.endswith(".weight"):
            value = value - arch.norm_shift
        renamed[target] = value
    return renamed


def _quant_params(weights: dict, model: nn.Module) -> dict[str, dict]:
    """{module path: {bits, group_size}} for every quantized tensor, inferred from packed vs expected shapes."""
    expected = {name: module.weight.shape for name, module in model.named_modules() if hasattr(module, "weight")}
    params = {}
    for key in weights:
        if not key.endswith(".scales"):
            continue
        module = key[: -len(".scales")]
        in_dims = expected[module][-1]
        packed = weights[f"{module}.weight"].shape[-1]
        params[module] = {"bits": packed * 32 // in_dims, "group_size": in_dims // weights[key].shape[-1]}
    return params


def _to_float32(weights: dict) -> dict:
    """Float tensors (including quantization scales/biases) to float32; packed uint32 weights unchanged."""
    return {k: (v if v.dtype == mx.uint32 else v.astype(mx.float32)) for k, v in weights.items()}


def _dequantize(weights: dict, quant: dict[str, dict]) -> dict:
    out = {k: v for k, v in weights.items() if not k.endswith((".scales", ".biases"))}
    for module, p in quant.items():
        out[f"{module}.weight"] = mx.dequantize(
            weights[f"{module}.weight"], weights[f"{module}.scales"], weights[f"{module}.biases"],
            group_size=p["group_size"], bits=p["bits"],
        )
    return out


def _native_weights(info: GGUFInfo, model: nn.Module, arch: Architecture, dequantize: bool) -> dict:
    """The weights of a GGUF mx.load reads; quantized layers stay quantized unless `dequantize`."""
    tensors, _ = mx.load(str(info.path), return_metadata=True)
    weights = _to_float32(_rename(tensors, arch))
    quant = _quant_params(weights, model)
    if dequantize:
        return _dequantize(weights, quant)
    nn.quantize(model, class_predicate=lambda p, m: quant.get(p, False))
    return weights


def requantize(model: nn.Module, bits: int, group_size: int = 32) -> None:
    """MLX's own quantization of every linear layer (and the embedding) whose input width the group divides."""
    if bits not in MLX_BITS[1:]:
        raise ValueError(f"MLX quantization bits must be one of {MLX_BITS[1:]}, got {bits}")

    def eligible(_, module) -> bool:
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % group_size == 0

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=eligible)


def load_mlx_model(path: str | Path | None = None, dequantize: bool = True, bits: int = 0) -> nn.Module:
    """A frozen mlx-lm model from a GGUF (default: the embedded model). dequantize=True gives float32 layers (the
    fastest on a CPU's BLAS); `bits` 4 or 8 re-quantizes a dequantized model with MLX's own quantization."""
    info = inspect_gguf(resolve_model_path(path))
    arch = architecture(info.architecture)
    model = build_model(info)
    if info.mlx_native:
        weights = _native_weights(info, model, arch, dequantize or bits > 0)
    else:
        weights = {k: mx.array(v) for k, v in _rename(read_float_tensors(info.path), arch).items()}
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    model.load_weights(list(weights.items()), strict=True)
    if bits:
        requantize(model, bits)
    mx.eval(model.parameters())
    model.freeze()
    model.eval()
    return model


def load_mlx_folder(path: str | Path, dequantize: bool = True) -> nn.Module:
    """A frozen mlx-lm model from a model folder (config.json + safetensors), float32 unless quantized."""
    from mlx_lm.utils import load_model

    model, _ = load_model(Path(path))
    if dequantize and not any(hasattr(m, "scales") for _, m in model.named_modules()):
        model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    model.freeze()
    model.eval()
    return model


def greedy_generate(model: nn.Module, prompt_tokens: list[int], max_tokens: int = 32,
                    stop_ids: tuple[int, ...] = ()) -> list[int]:
    """Greedy decoding with a KV cache (a check helper)."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt_tokens]), cache=cache)
    out: list[int] = []
    for _ in range(max_tokens):
        token = int(mx.argmax(logits[0, -1]).item())
        if token in stop_ids:
            break
        out.append(token)
        logits = model(mx.array([[token]]), cache=cache)
    return out
