"""Build an MLX model (mlx-lm's llama Model) from a GGUF's tensors, quantized or dequantized, for training."""

from __future__ import annotations

import re
from pathlib import Path

from ..mlx_runtime import mx, nn
from .gguf import GGUFInfo, inspect_gguf, resolve_model_path

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias|scales|biases)$")
_GLOBAL_RE = re.compile(r"^([a-z_]+)\.(weight|bias|scales|biases)$")


def mlx_name(gguf_name: str) -> str | None:
    """The mlx-lm parameter name of a GGUF tensor (None for tensors the llama Model does not use)."""
    if match := _BLOCK_RE.match(gguf_name):
        layer, part, leaf = match.groups()
        if part in _LAYER_NAMES:
            return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{leaf}"
        return None
    if match := _GLOBAL_RE.match(gguf_name):
        part, leaf = match.groups()
        if part in _GLOBAL_NAMES:
            return f"{_GLOBAL_NAMES[part]}.{leaf}"
    return None


def model_args(info: GGUFInfo, has_attention_bias: bool = False, has_mlp_bias: bool = False):
    """mlx-lm llama ModelArgs from GGUF metadata (rope_traditional: GGUF permutes Q/K for llama.cpp's rope)."""
    from mlx_lm.models.llama import ModelArgs

    return ModelArgs(
        model_type="llama",
        hidden_size=info.hidden_size,
        num_hidden_layers=info.n_layers,
        intermediate_size=info.intermediate_size,
        num_attention_heads=info.n_heads,
        num_key_value_heads=info.n_kv_heads,
        head_dim=info.head_dim,
        rms_norm_eps=info.rms_norm_eps,
        vocab_size=info.vocab_size,
        max_position_embeddings=info.context_length,
        rope_theta=info.rope_theta,
        rope_traditional=True,
        tie_word_embeddings=info.tied_embeddings,
        attention_bias=has_attention_bias,
        mlp_bias=has_mlp_bias,
    )


def _rename(tensors: dict) -> dict:
    renamed = {}
    for name, value in tensors.items():
        target = mlx_name(name)
        if target is not None:
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


def load_mlx_model(path: str | Path | None = None, dequantize: bool = True) -> nn.Module:
    """Build a frozen mlx-lm llama Model from a GGUF; dequantize=True gives float32 layers (fastest on CPU BLAS)."""
    from mlx_lm.models.llama import Model

    info = inspect_gguf(resolve_model_path(path))
    tensors, _ = mx.load(str(info.path), return_metadata=True)
    weights = _rename(tensors)
    model = Model(model_args(
        info,
        has_attention_bias="model.layers.0.self_attn.q_proj.bias" in weights,
        has_mlp_bias="model.layers.0.mlp.gate_proj.bias" in weights,
    ))
    quant = _quant_params(weights, model)
    weights = _to_float32(weights)
    if dequantize:
        weights = _dequantize(weights, quant)
    else:
        nn.quantize(model, class_predicate=lambda p, m: quant.get(p, False))
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.freeze()
    model.eval()
    return model


def greedy_generate(model: nn.Module, prompt_tokens: list[int], max_tokens: int = 32,
                    stop_ids: tuple[int, ...] = ()) -> list[int]:
    """Greedy decoding with a KV cache (a check helper; sampling at scale is llama.cpp's job)."""
    cache = model.make_cache()
    logits = model(mx.array([prompt_tokens]), cache=cache)
    out: list[int] = []
    for _ in range(max_tokens):
        token = int(mx.argmax(logits[0, -1]).item())
        if token in stop_ids:
            break
        out.append(token)
        logits = model(mx.array([[token]]), cache=cache)
    return out
