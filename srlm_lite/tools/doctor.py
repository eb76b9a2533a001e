"""What the environment gives srlm-lite (MLX device, BLAS speed, llama.cpp build, model) and engine parity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..blas import ensure_fast_blas
from ..engines import BACKENDS, default_backend, why_backend
from ..runs import ADAPTER_DIR, base_model, completed_iterations, iteration_dir, run_config

PARITY_LIMIT = 0.1  # mean |Δ log p| per token; above it something is wrong (rope layout, template, tokens)


def environment() -> dict:
    """MLX device and matmul speed (with our BLAS arrangement and, in a subprocess, without), llama.cpp, model."""
    blas = ensure_fast_blas()
    from ..mlx_runtime import matmul_gflops, mx

    report = {
        "python": sys.version.split()[0],
        "mlx": {"device": str(mx.default_device()), "blas_loaded": blas.loaded, "blas_path": blas.path,
                "blas_message": blas.message, "matmul_gflops": round(matmul_gflops(), 1),
                "matmul_gflops_without_blas": _gflops_without_blas()},
        "llama_cpp": _llama_cpp_info(),
        "model": _model_info(),
        "backend": {"default": default_backend(), "why": why_backend(), "available": list(BACKENDS)},
    }
    return report


def parity(run_dir: str | Path | None = None) -> list[dict]:
    """Mean absolute per-token log-prob difference, MLX vs llama.cpp, for M0 and each iteration's model of a run."""
    from ..models.parity import parity_report

    config = run_config(run_dir)
    base, serve = base_model(config), config.model.serve
    rows = [{"model": "M0 (base)", **parity_report(base, serve=serve)}]
    for t in completed_iterations(run_dir) if run_dir else []:
        rows.append({"model": f"M{t} (iteration {t})",
                     **parity_report(base, adapter_dir=iteration_dir(run_dir, t) / ADAPTER_DIR, serve=serve)})
    for row in rows:
        row["ok"] = row["mean_abs_diff"] <= PARITY_LIMIT
    return rows


def _gflops_without_blas() -> float | None:
    if sys.platform == "darwin":
        return None
    code = "from srlm_lite.mlx_runtime import matmul_gflops; print(matmul_gflops(512, 2))"
    env = {**os.environ, "SRLM_BLAS": "none", "LD_PRELOAD": ""}
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        return round(float(done.stdout.strip().splitlines()[-1]), 1)
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def _llama_cpp_info() -> dict:
    try:
        import llama_cpp
    except ImportError as exc:
        return {"available": False, "error": str(exc)}
    info = llama_cpp.llama_print_system_info()
    return {"available": True, "version": llama_cpp.__version__,
            "system_info": info.decode() if isinstance(info, bytes) else str(info)}


def _model_info() -> dict:
    from ..models.gguf import embedded_model_path, inspect_gguf

    try:
        path = embedded_model_path()
        info = inspect_gguf(path)
    except Exception as exc:  # reported, not raised: doctor must say what is missing
        return {"embedded_found": False, "error": str(exc)}
    return {"embedded_found": True, "path": str(path), "size_mb": round(path.stat().st_size / 1e6, 1),
            "architecture": info.architecture, "layers": info.n_layers, "tensor_types": info.tensor_types}


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(environment(), indent=2))
