"""`iterate`: the self-rewarding loop, M_t -> M_{t+1}, each stage's output in the run directory, resumable.

Data flows one way: config -> loop -> stages (`stages.STAGES`) -> engines -> run directory (`runs`, `records`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import RunConfig, load
from .hooks import Hooks
from .records import file_sha256, read_json, write_json_atomic
from .runs import (ADAPTER_DIR, CONFIG_FILE, GGUF_ADAPTER, MANIFEST, ModelSpec, RunPaths, is_complete, iteration_dir,
                   prepare_run, provenance, start_adapter)
from .stages import STAGES
from .stages.context import IterationContext

__all__ = ["Hooks", "IterationContext", "iterate", "run_iteration", "run_stage", "stage_context"]


def iterate(config: RunConfig, out: Path, *, resume: bool = False, hooks: Hooks | None = None) -> dict:
    """Run (or resume) `config.iterations` iterations; returns the run summary (also written to the manifest)."""
    from .blas import ensure_fast_blas

    hooks = hooks or Hooks()
    blas = ensure_fast_blas()
    if not blas.loaded:
        hooks.say(f"WARNING: {blas.message}")
    paths = prepare_run(config, out, resume)
    summaries, evals = [], {}
    adapter = start_adapter(config)
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
    write_json_atomic(out / MANIFEST, {**provenance(config, paths), "summary": result})
    return result


def _evaluate(config: RunConfig, out: Path, k: int, hooks: Hooks) -> dict:
    from .evals.scheduled import chosen, evaluate_model

    if not chosen(config.eval):
        return {}
    return {f"M{k}": evaluate_model(out, config, k, say=hooks.say, progress=hooks.progress)}


def run_stage(ctx: IterationContext, stage: str) -> dict:
    """Run one stage of one iteration on the run directory (resuming its partial output); returns its stats."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    ctx.dir.mkdir(parents=True, exist_ok=True)
    return STAGES[stage](ctx)


def run_iteration(config: RunConfig, paths: RunPaths, t: int, adapter_dir: Path | None, hooks: Hooks) -> dict:
    """One M_t -> M_{t+1} step: instructions, responses, judge, pairs with M_t; DPO; export for the sampler."""
    ctx = IterationContext(config, paths, t, ModelSpec(paths.model, adapter_dir, f"M{t - 1}"), hooks)
    lora = ctx.model.lora_gguf
    hooks.say(f"iteration {t}: sampling and judging with {lora or 'M0 (the base model)'}")
    stats, seconds = {}, {}
    for stage in STAGES:
        started = time.perf_counter()
        stats[stage] = run_stage(ctx, stage)
        seconds[stage] = time.perf_counter() - started
    gguf = ctx.dir / ADAPTER_DIR / GGUF_ADAPTER
    summary = iteration_summary(t, stats, seconds)
    summary.update(sampled_with=str(lora) if lora else None, sampled_with_sha256=file_sha256(lora) if lora else None,
                   adapter_gguf=str(gguf), adapter_gguf_sha256=file_sha256(gguf))
    write_json_atomic(ctx.dir / MANIFEST, {**provenance(config, paths), "iteration": t, "summary": summary,
                                           "stats": stats})
    hooks.say(f"iteration {t}: done in {sum(seconds.values()):.0f}s, {summary['pairs']} pairs")
    return summary


def stage_context(run_dir: Path, t: int, hooks: Hooks | None = None,
                  overrides: dict | None = None) -> IterationContext:
    """Reopen a run directory to run one stage of iteration t alone (M_t = the adapter of iteration t-1).

    `overrides` ({"train.loss": "ipo"}) apply to this stage only; the run's config.toml is left as it is."""
    config = load(Path(run_dir) / CONFIG_FILE)
    paths = prepare_run(config, Path(run_dir), resume=True)
    if overrides:
        config = load(Path(run_dir) / CONFIG_FILE, overrides)
    adapter_dir = start_adapter(config)
    if t > 1:
        adapter_dir = iteration_dir(run_dir, t - 1) / ADAPTER_DIR
        if not (adapter_dir / GGUF_ADAPTER).exists():
            raise FileNotFoundError(f"iteration {t} samples with the model trained in iteration {t - 1}, "
                                    f"but {adapter_dir / GGUF_ADAPTER} does not exist yet")
    return IterationContext(config, paths, t, ModelSpec(paths.model, adapter_dir, f"M{t - 1}"), hooks or Hooks())


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
