"""`iterate`: the self-rewarding loop, M_t -> M_{t+1}, each stage's output in the run directory, resumable.

Data flows one way: config -> loop -> stages (`stages.STAGES`) -> engines -> run directory (`runs`, `records`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import ConfigError, RunConfig, load
from .hooks import Hooks
from .lock import run_lock
from .records import ensure_dir, file_sha256, read_json, remove_temporaries, write_json_atomic
from .runs import (ADAPTER_DIR, CONFIG_FILE, GGUF_ADAPTER, MANIFEST, MLX_ADAPTER, RunPaths, completed_iterations,
                   is_complete, iteration_dir, model_spec, prepare_run, provenance, run_config, start_adapter)
from .stages import FILES, STAGES
from .stages.context import IterationContext
from .stages.instructions import seed_pool
from .training import CHECKPOINT_FILE

__all__ = ["Hooks", "IterationContext", "iterate", "run_iteration", "run_stage", "stage_context"]


def iterate(config: RunConfig, out: Path, *, resume: bool = False, hooks: Hooks | None = None,
            until: int | None = None) -> dict:
    """Run (or resume) `config.iterations` iterations; returns the run summary (also written to the manifest).
    `until` stops after that iteration (the run stays unfinished: no run manifest until the last one is done).

    The run directory is locked while this runs (`lock.run_lock`): a second writer is refused."""
    from .blas import ensure_fast_blas

    hooks = hooks or Hooks()
    blas = ensure_fast_blas()
    if not blas.loaded:
        hooks.say(f"WARNING: {blas.message}")
    seed_pool(config.instructions)  # a bad seed file fails here, before anything is written
    out = Path(out)
    new = not out.exists()
    try:
        with run_lock(out, hooks.say):
            return _iterate_locked(config, out, resume, hooks, until)
    except BaseException:
        if new and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before anything was written (a bad model file...): leave nothing behind
        raise


def _iterate_locked(config: RunConfig, out: Path, resume: bool, hooks: Hooks, until: int | None = None) -> dict:
    paths = prepare_run(config, out, resume)
    check_same_model(out, paths.model_sha256)
    remove_temporaries(out)  # what writers killed mid-write left (the lock is ours: nobody is writing)
    summaries, evals = [], {}
    adapter = start_adapter(config)
    if config.eval.baseline:
        evals.update(_evaluate(config, out, 0, hooks))
    last = config.iterations if until is None else min(until, config.iterations)
    for t in range(1, last + 1):
        it_dir = iteration_dir(out, t)
        if is_complete(it_dir):
            summary = read_json(it_dir / MANIFEST)["summary"]
            hooks.say(f"iteration {t}: already complete, skipped")
        else:
            summary = run_iteration(config, paths, t, adapter, hooks)
        summaries.append(summary)
        adapter = Path(summary.get("adapter") or Path(summary["adapter_gguf"]).parent)
        evals.update(_evaluate(config, out, t, hooks))
    result = {"run_dir": str(out), "iterations": summaries}
    if evals:
        result["evals"] = evals
    if last == config.iterations:
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
    with run_lock(ctx.paths.root, ctx.hooks.say):
        ensure_dir(ctx.dir)
        stats = STAGES[stage](ctx)
    for key, what in SKIPPED.items():
        if stats.get(key):
            ctx.hooks.say(f"iteration {ctx.t}: {stage}: {stats[key]} {what}")
    return stats


# Counts a stage reports when it could not use an input as it is (shown as a line while the run goes on)
SKIPPED = {
    "too_long_for_context": "prompt(s) too long for the model's context, skipped (see the stage's stats)",
    "pairs_skipped": "pair(s) whose prompt leaves no room for the response within train.max_length, skipped",
}


def check_same_model(out: Path, sha256: str) -> None:
    """A resumed run must sample with the model file its finished iterations used (a changed file mixes runs)."""
    for t in completed_iterations(out):
        used = read_json(iteration_dir(out, t) / MANIFEST).get("model_sha256")
        if used and used != sha256:
            raise ConfigError(f"the model file changed since iteration {t} of {out} was made (sha256 {used[:12]}... "
                              f"then, {sha256[:12]}... now): resuming would mix two runs; start a new run")


def run_iteration(config: RunConfig, paths: RunPaths, t: int, adapter_dir: Path | None, hooks: Hooks) -> dict:
    """One M_t -> M_{t+1} step: instructions, responses, judge, pairs with M_t; DPO; export for the sampler."""
    ctx = IterationContext(config, paths, t, model_spec(config, adapter_dir, f"M{t - 1}"), hooks)
    made = (ctx.dir / FILES["pairs"]).exists()  # resumed after the pairs, or linked from another arm: training only
    hooks.say(f"iteration {t}: {'pairs already made; training' if made else 'sampling and judging'} with "
              f"{adapter_dir or 'M0 (the base model)'} ({config.model.backend})")
    stats, seconds = {}, {}
    for stage in STAGES:
        started = time.perf_counter()
        stats[stage] = run_stage(ctx, stage)
        seconds[stage] = time.perf_counter() - started
    summary = iteration_summary(t, stats, seconds)
    summary.update(_adapters(ctx.model.adapter, ctx.dir / ADAPTER_DIR, config.model.backend))
    write_json_atomic(ctx.dir / MANIFEST, {**provenance(config, paths), "iteration": t, "summary": summary,
                                           "stats": stats})
    (ctx.dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # the iteration is complete: its adapter is what counts
    hooks.say(f"iteration {t}: done in {sum(seconds.values()):.0f}s, {summary['pairs']} pairs")
    return summary


def _adapters(sampled_with: Path | None, made: Path, backend: str) -> dict:
    """Which adapter an iteration sampled with and which it made, with sha256s: iteration t+1 must sample with
    exactly what iteration t made. llama.cpp applies the GGUF LoRA; the MLX engine the mlx-lm weights."""
    def gguf(folder: Path | None) -> Path | None:
        if backend == "mlx" or folder is None or not (folder / GGUF_ADAPTER).exists():
            return None
        return folder / GGUF_ADAPTER

    def weights(folder: Path | None) -> Path | None:
        return folder / MLX_ADAPTER if folder is not None else None

    before, after = gguf(sampled_with), gguf(made)
    exported = made / GGUF_ADAPTER if (made / GGUF_ADAPTER).exists() else None
    return {"sampled_with": str(before or weights(sampled_with)) if sampled_with else None,
            "sampled_with_sha256": file_sha256(before or weights(sampled_with)) if sampled_with else None,
            "adapter": str(made), "adapter_sha256": file_sha256(weights(made)),
            "adapter_gguf": str(exported) if exported else None,
            "adapter_gguf_sha256": file_sha256(exported) if exported else None,
            "next_samples_with": str(after or weights(made))}


def stage_context(run_dir: Path, t: int, hooks: Hooks | None = None,
                  overrides: dict | None = None) -> IterationContext:
    """Reopen a run directory to run one stage of iteration t alone (M_t = the adapter of iteration t-1).

    `overrides` ({"train.loss": "ipo"}) apply to this stage only; the run's config.toml is left as it is."""
    config = run_config(run_dir)
    paths = prepare_run(config, Path(run_dir), resume=True)
    if overrides:
        config = load(Path(run_dir) / CONFIG_FILE, overrides)
    adapter_dir = start_adapter(config)
    if t > 1:
        adapter_dir = iteration_dir(run_dir, t - 1) / ADAPTER_DIR
        if not (adapter_dir / MLX_ADAPTER).exists():
            raise FileNotFoundError(f"iteration {t} samples with the model trained in iteration {t - 1}, "
                                    f"but {adapter_dir / MLX_ADAPTER} does not exist yet")
    return IterationContext(config, paths, t, model_spec(config, adapter_dir, f"M{t - 1}"), hooks or Hooks())


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
        # the honest figures: the first epoch's steps each on unseen pairs; pairs held out of training
        "online_loss": tra.get("online_loss"),
        "online_reward_accuracy": tra.get("online_accuracy"),
        "eval_loss": tra.get("eval_loss"),
        "eval_reward_accuracy": tra.get("eval_accuracy"),
        "pairs_held_out": tra.get("pairs_held_out", 0),
        "reward_source": stats.get("reward", {}).get("source"),
        "reward_signal": stats.get("reward", {}).get("signal"),
        "loops_ranked_last": stats.get("reward", {}).get("loops_ranked_last"),
        "mean_response_chars": res["mean_response_chars"],
        "mean_response_tokens": res["mean_response_tokens"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
