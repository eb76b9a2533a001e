"""The weights llama.cpp serves: the GGUF as shipped, or a copy dequantized once to F16 by llama.cpp, cached.

Why a copy: on CPU, llama.cpp multiplies Q4_1 weights one activation vector at a time (the activations quantized
to 8 bits first), while F16 weights go through its batched matrix kernels. Measured on the project's 2-core
machine with SmolLM2-135M (flash attention on): 16 candidates decoded together 348 vs about 270 tokens/s, a
response judged by the expected-score judge 0.27 vs 0.57 s; one sequence alone is slower, 124 vs 158 tokens/s.
F16 holds every Q4_1 weight to within F16 rounding, so it is the same model, and it skips the activation
quantization, so the sampler's log-probs come closer to the float32 model MLX trains: 0.003 nats/token apart
against 0.063 for the shipped file (`srlm-lite doctor`). (A Q8_0 copy was faster for one sequence alone but 0.10
nats/token apart, the edge of what parity accepts, so it is not offered.)
"""

from __future__ import annotations

import os
from pathlib import Path

from ..records import file_sha256

SERVE_KINDS = ("f16", "gguf")  # the GGUF as shipped, or an F16 copy made by llama.cpp


def cache_dir() -> Path:
    """Where converted copies live: $SRLM_CACHE, else ~/.cache/srlm-lite."""
    return Path(os.environ.get("SRLM_CACHE") or Path.home() / ".cache" / "srlm-lite")


def served_model(path: str | Path, kind: str = "f16") -> Path:
    """The GGUF llama.cpp should load for `path`: itself (`gguf`), or its F16 copy (`f16`), made on first use.

    The copy is named by the source's sha256, written to a temporary name and renamed, so a killed conversion
    leaves nothing a later call would take for finished."""
    if kind not in SERVE_KINDS:
        raise ValueError(f"serve must be one of {', '.join(SERVE_KINDS)}, got {kind!r}")
    path = Path(path)
    if kind == "gguf":
        return path
    target = cache_dir() / f"{path.stem}.{file_sha256(path)[:16]}.{kind}.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            _convert(path, partial, kind)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def _convert(source: Path, target: Path, kind: str) -> None:
    """llama.cpp's own converter (`llama_model_quantize`), allowed to re-type already quantized tensors."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16}[kind]
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if code != 0 or not target.exists():
        raise RuntimeError(f"llama.cpp could not convert {source} to {kind} (code {code}); "
                           f"set [model] serve = \"gguf\" to serve the file as it is")
