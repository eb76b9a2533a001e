"""Inference engines behind one protocol: `open_engine(model, options)` picks the backend from a registry.

A backend is a class with `open(model: ModelSpec, options: EngineOptions) -> Engine`, named in `ENGINES` by its
import path (imported on first use, so choosing one never loads another's libraries). Adding an engine touches one
place: its module, and its line here. The protocol itself is in `engines.base`."""

from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass, fields

from .base import SEQUENCES_PER_BATCH, Completion, Engine, complete_each, complete_many, complete_n

ENGINES = {
    "llama-cpp": "srlm_lite.engines.llama_cpp:LlamaCppEngine",
    "mlx": "srlm_lite.engines.mlx:MLXEngine",
    "openai": "srlm_lite.engines.openai:OpenAIEngine",
}
BACKENDS = tuple(ENGINES)


def default_backend() -> str:
    """MLX on Apple Silicon (its GPU is MLX's home), llama.cpp everywhere else (CPU: llama.cpp is much faster)."""
    return "mlx" if sys.platform == "darwin" and platform.machine() == "arm64" else "llama-cpp"


def why_backend() -> str:
    """One line: which backend is the default on this machine, and why."""
    if default_backend() == "mlx":
        return "mlx: this is Apple Silicon, where MLX samples and judges on the GPU"
    return (f"llama-cpp: this is {sys.platform}/{platform.machine()}, where MLX runs on the CPU only (llama.cpp "
            f"samples several times faster there); --backend mlx still works")


@dataclass(frozen=True)
class EngineOptions:
    """How an engine runs a model (a run's `[model]` section without the model's path)."""

    backend: str = "llama-cpp"
    n_ctx: int = 4096
    n_threads: int = 0
    n_batch: int = 512
    batched: bool = True
    serve: str = "f16"
    flash_attn: bool = True
    mlx_bits: int = 0
    # backend "openai": an OpenAI-compatible server (see engines/openai.py); the key itself is never held here
    base_url: str = ""
    api_key_env: str = ""
    concurrency: int = 4
    serve_local: bool = False
    server: str = "llama-cpp-python"
    served_model: str = ""
    request_timeout: float = 600.0
    max_retries: int = 8
    server_log: str = ""  # --serve-local: the server's own log (the iteration folder's server.log in a run)

    @classmethod
    def from_config(cls, model_config) -> "EngineOptions":
        """The options of a run's `[model]` section (a ModelConfig); fields it lacks keep their defaults."""
        return cls(**{f.name: getattr(model_config, f.name) for f in fields(cls) if hasattr(model_config, f.name)})


def engine_class(backend: str):
    """The class registered for `backend`, imported on first use."""
    if backend not in ENGINES:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    module, _, name = ENGINES[backend].partition(":")
    return getattr(importlib.import_module(module), name)


def open_engine(model, options: EngineOptions | None = None) -> Engine:
    """An engine serving `model` (a `runs.ModelSpec`: base model file, optional adapter) with `options`."""
    options = options or EngineOptions()
    return engine_class(options.backend).open(model, options)


__all__ = ["BACKENDS", "ENGINES", "default_backend", "why_backend", "SEQUENCES_PER_BATCH", "Completion", "Engine",
           "EngineOptions", "complete_each", "complete_many", "complete_n", "engine_class", "open_engine"]
