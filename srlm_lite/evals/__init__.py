"""Evaluations: the judge against labelled preferences, IFEval instruction following, head-to-head of iterations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, load


@dataclass(frozen=True)
class ModelSpec:
    """Which model an eval uses: a base GGUF, optionally a GGUF LoRA adapter, and how to name it in reports."""

    base: Path
    lora: Path | None
    label: str

    @property
    def key(self) -> tuple[str, str | None]:
        return str(self.base), str(self.lora) if self.lora else None


def resolve_model(run_dir: str | Path | None = None, iteration: int | None = None,
                  model_path: str | Path | None = None, adapter: str | Path | None = None) -> ModelSpec:
    """M_k of a run (`run_dir` + `iteration`; M_0 = the run's starting model), or a GGUF file (`model_path`, else
    the embedded model) with an optional `adapter` (an `srlm-lite sft --out` directory or a GGUF LoRA file)."""
    from ..models import resolve_model_path

    if run_dir is not None and (model_path is not None or adapter is not None):
        raise ValueError("give either a run (--run DIR --iteration K) or --model PATH / --adapter, not both")
    if run_dir is not None:
        if iteration is None:
            raise ValueError("--run needs --iteration K (0 = the base model M0)")
        from ..loop import model_for_iteration

        base, lora = model_for_iteration(run_dir, iteration)
        return ModelSpec(base, lora, f"M{iteration} of {run_dir}")
    if iteration is not None:
        raise ValueError("--iteration needs --run DIR")
    base = resolve_model_path(model_path)
    label = str(model_path) if model_path else f"embedded {base.name}"
    if adapter is None:
        return ModelSpec(base, None, label)
    lora = _adapter_gguf(Path(adapter))
    return ModelSpec(base, lora, f"{label} + {adapter}")


def _adapter_gguf(adapter: Path) -> Path:
    """The GGUF LoRA of an adapter given as a file or as a directory (`sft --out DIR`, or its adapter/)."""
    from ..runs import ADAPTER_DIR, GGUF_ADAPTER

    for candidate in (adapter, adapter / GGUF_ADAPTER, adapter / ADAPTER_DIR / GGUF_ADAPTER):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no GGUF LoRA adapter at {adapter} (expected {GGUF_ADAPTER} in it or in "
                            f"{adapter / ADAPTER_DIR})")


def run_config(run_dir: str | Path | None) -> RunConfig:
    """The run's resolved config.toml (judge settings, context length), or the defaults without a run."""
    if run_dir is None:
        return RunConfig()
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a run directory made by `srlm-lite iterate`?")
    return load(path)


def open_engine(spec: ModelSpec, config: RunConfig | None = None):
    """A llama.cpp engine serving `spec`, with the run's model settings (context, threads, batch)."""
    from ..engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine.from_config(spec.base, (config or RunConfig()).model, spec.lora)
