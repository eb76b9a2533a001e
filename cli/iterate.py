"""`srlm-lite iterate`: the whole self-rewarding loop on the embedded default model (or --model)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from srlm_lite.config import ConfigError
from srlm_lite.models.gguf import UnsupportedModelError

from .options import REWARD_WEIGHTS, SERVER_SETTINGS, config_options, overrides
from .ui import err, eval_table, out, print_json_last, progress_hooks, summary_table

SETTINGS = ("model.path", "model.backend", "model.chat_template", "model.mlx_bits", "iterations",
            "instructions.num_prompts", "responses.samples", "judge.judge_samples", "judge.mode", "reward.source",
            "reward.consistency", "reward.length_penalty", "responses.max_tokens", "train.epochs",
            "train.learning_rate", "train.objective", "train.loss", "train.length_normalize", "pairs.min_score_gap",
            "pairs.length_tie_break", "eval.limit", "seed",
            "instructions.seed_file", "train.hosts") + REWARD_WEIGHTS + SERVER_SETTINGS


@click.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="TOML config file.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory. Default: runs/<timestamp>.")
@config_options(*SETTINGS)
@click.option("--init", "init_dir", type=click.Path(exists=True, file_okay=False),
              help="Start from this adapter (made by `srlm-lite sft --out DIR`) instead of the base model.")
@click.option("--eval", "eval_specs", multiple=True, metavar="KIND=FILE",
              help="After each iteration, evaluate its model into the run directory: judge=PAIRS.jsonl, "
                   "ifeval=PROMPTS.jsonl or h2h=PROMPTS.jsonl (vs the starting model). Repeatable.")
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def iterate(config_file, out_dir, init_dir, eval_specs, resume, as_json, **settings):
    """Run the self-rewarding loop: self-instruct -> N candidates -> LLM-as-a-Judge -> pairs -> DPO, K times."""
    from srlm_lite.loop import iterate as run_loop
    from srlm_lite.runs import resolve_config

    given = overrides(settings)
    given["init"] = str(Path(init_dir).resolve()) if init_dir else None
    if given.get("instructions.seed_file"):  # an absolute path, so that --resume from elsewhere finds it
        given["instructions.seed_file"] = str(Path(given["instructions.seed_file"]).expanduser().resolve())
    given.update(_eval_overrides(eval_specs))
    if resume and not out_dir:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    try:
        config = resolve_config(Path(out_dir) if out_dir else None, resume=resume, config_file=config_file,
                                overrides=given)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    out_path = Path(out_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    err.print(f"[bold]srlm-lite iterate[/bold] -> {out_path}  ({config.iterations} iterations, "
              f"{config.instructions.num_prompts} prompts x {config.responses.samples} samples, {_judging(config)})")
    started = time.perf_counter()
    try:
        with progress_hooks() as hooks:
            result = run_loop(config, out_path, resume=resume, hooks=hooks)
    except (FileExistsError, FileNotFoundError, UnsupportedModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    result["seconds"] = round(time.perf_counter() - started, 1)
    err.print(summary_table(result["iterations"]))
    err.print(judge_caveat(result["iterations"], config.judge.mode))
    if result.get("evals"):
        err.print(eval_table(result["evals"]))
    err.print(f"run directory: {out_path}   total {result['seconds'] / 60:.1f} min")
    if as_json:
        print_json_last(result)
    else:
        last = result["iterations"][-1]
        out.print(f"adapter of the final model: {last.get('adapter_gguf') or last.get('adapter')}")


def _eval_overrides(eval_specs) -> dict:
    """`--eval KIND=FILE` options as config overrides ({"eval.judge_pairs": "/abs/file"}, ...)."""
    from srlm_lite.evals.scheduled import FILE_KEYS, parse_eval_option

    found = {}
    try:
        for spec in eval_specs:
            kind, path = parse_eval_option(spec)
            if not Path(path).is_file():
                raise click.UsageError(f"--eval {spec}: {path} is not a file")
            found[f"eval.{FILE_KEYS[kind]}"] = str(Path(path).resolve())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    return found


def _judging(config) -> str:
    from srlm_lite.judging import judge_format

    if judge_format(config.judge.mode).writes_text:
        return f"{config.judge.judge_samples} judgments"
    return f"the {config.judge.mode} judge"


def judge_caveat(iterations: list[dict], mode: str) -> str:
    """Honest reading of the judge's figures, printed with every summary."""
    from srlm_lite.judging import judge_format

    scored = min(it["score_rate"] for it in iterations)
    if judge_format(mode).writes_text:
        parse = min(it["parse_rate"] for it in iterations)
        how = (f"in the worst iteration {parse:.0%} of verdicts wrote a parseable 'Score: X' themselves and "
               f"{scored:.0%} had a score")
    else:
        how = f"{mode} judge (no text is generated); in the worst iteration {scored:.0%} of verdicts had a score"
    return (f"[yellow]Judge: {how}. A small model's judge is the method's weak point: SmolLM2-135M's best judging "
            "format ranks labelled answer pairs at 57% (150 pairs), mostly by length (README, 'A judge with "
            "signal'), so score gaps are weak signal.[/yellow]")
