"""`srlm-lite iterate`: the whole self-rewarding loop on the embedded default model (or --model)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from srlm_lite.config import ConfigError, RunConfig, load
from srlm_lite.models import UnsupportedModelError

from .ui import err, eval_table, out, print_json_last, progress_hooks, summary_table


_DEFAULTS = RunConfig()


def _default(dotted: str) -> str:
    """`[default: X]` read from the config dataclasses, so help text never drifts from the real defaults."""
    value = _DEFAULTS
    for part in dotted.split("."):
        value = getattr(value, part)
    return f"[default: {value}]"


@click.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="TOML config file.")
@click.option("--model", type=click.Path(), help="GGUF model (llama architecture; Q4_0/Q4_1/Q8_0/F16/F32). "
              "Default: the embedded SmolLM2-135M-Instruct Q4_1.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory. Default: runs/<timestamp>.")
@click.option("--iterations", type=int, help=f"Self-rewarding iterations. {_default('iterations')}")
@click.option("--prompts", type=int, help=f"New prompts kept per iteration. {_default('instructions.num_prompts')}")
@click.option("--samples", type=int, help=f"Candidate responses per prompt (N). {_default('responses.samples')}")
@click.option("--judge-samples", type=int,
              help=f"Judgments per response, averaged (J). {_default('judge.judge_samples')}")
@click.option("--judge-mode", type=click.Choice(["forced", "sampled", "expected", "pairwise"]),
              help="expected: no justification, the expected digit after a forced 'Score: ', one forward pass per "
                   "response (fastest, deterministic, J ignored; ranked labelled pairs best here, 57% vs 54% for "
                   "forced); forced: J sampled justifications, each scored from its own 'Score: X' or the digit "
                   "distribution after a forced 'Score: ' (2-5x slower); sampled: free-text verdicts only (paper; a "
                   "small model rarely writes a score); pairwise: every two candidates compared in both orders from "
                   "the answer-letter distribution, score = 5 x mean P(better). "
                   f"{_default('judge.mode')}")
@click.option("--max-tokens", type=int,
              help=f"Token limit of one candidate response. {_default('responses.max_tokens')}")
@click.option("--epochs", type=int, help=f"DPO passes over each iteration's pairs. {_default('train.epochs')}")
@click.option("--learning-rate", type=float, help=f"LoRA learning rate. {_default('train.learning_rate')}")
@click.option("--loss", type=click.Choice(["sigmoid", "ipo", "hinge", "rpo"]),
              help="Preference loss: sigmoid (DPO), ipo, hinge (SLiC), rpo (DPO + NLL of the chosen answer). "
                   f"{_default('train.loss')}")
@click.option("--length-normalize/--no-length-normalize", default=None,
              help="Average log-probs per response token instead of summing them (against length drift). "
                   f"{_default('train.length_normalize')}")
@click.option("--min-score-gap", type=float,
              help=f"Drop prompts whose best-worst score gap is below this. {_default('pairs.min_score_gap')}")
@click.option("--length-tie-break/--no-length-tie-break", default=None,
              help="Of near-equal best answers choose the shortest, of near-equal worst reject the longest "
                   f"(tolerance: pairs.tie_tolerance). {_default('pairs.length_tie_break')}")
@click.option("--init", "init_dir", type=click.Path(exists=True, file_okay=False),
              help="Start from this adapter (made by `srlm-lite sft --out DIR`) instead of the base model.")
@click.option("--eval", "eval_specs", multiple=True, metavar="KIND=FILE",
              help="After each iteration, evaluate its model into the run directory: judge=PAIRS.jsonl, "
                   "ifeval=PROMPTS.jsonl or h2h=PROMPTS.jsonl (vs the starting model). Repeatable.")
@click.option("--eval-limit", type=int, help=f"Items per evaluation file. {_default('eval.limit')}")
@click.option("--seed", type=int, help=f"Run seed. {_default('seed')}")
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def iterate(config_file, model, out_dir, iterations, prompts, samples, judge_samples, judge_mode, max_tokens, epochs,
            learning_rate, loss, length_normalize, min_score_gap, length_tie_break, init_dir, eval_specs, eval_limit,
            seed, resume, as_json):
    """Run the self-rewarding loop: self-instruct -> N candidates -> LLM-as-a-Judge -> pairs -> DPO, K times."""
    from srlm_lite.evals.scheduled import FILE_KEYS, parse_eval_option
    from srlm_lite.loop import iterate as run_loop

    overrides = {
        "model.path": model, "iterations": iterations, "instructions.num_prompts": prompts,
        "responses.samples": samples, "judge.judge_samples": judge_samples, "judge.mode": judge_mode,
        "responses.max_tokens": max_tokens, "train.epochs": epochs, "train.learning_rate": learning_rate,
        "train.loss": loss, "train.length_normalize": length_normalize, "pairs.min_score_gap": min_score_gap,
        "pairs.length_tie_break": length_tie_break, "init": str(Path(init_dir).resolve()) if init_dir else None,
        "eval.limit": eval_limit, "seed": seed,
    }
    try:
        for spec in eval_specs:
            kind, path = parse_eval_option(spec)
            if not Path(path).is_file():
                raise click.UsageError(f"--eval {spec}: {path} is not a file")
            overrides[f"eval.{FILE_KEYS[kind]}"] = str(Path(path).resolve())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        config = load(config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if resume and not out_dir:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    if resume and not config_file and (Path(out_dir) / "config.toml").exists():
        config = load(Path(out_dir) / "config.toml", overrides)
    out_path = Path(out_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    judging = (f"{config.judge.judge_samples} judgments" if config.judge.mode in ("forced", "sampled")
               else f"the {config.judge.mode} judge")
    err.print(f"[bold]srlm-lite iterate[/bold] -> {out_path}  ({config.iterations} iterations, "
              f"{config.instructions.num_prompts} prompts x {config.responses.samples} samples, {judging})")
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
        out.print(f"adapter of the final model: {result['iterations'][-1]['adapter_gguf']}")


def judge_caveat(iterations: list[dict], mode: str) -> str:
    """Honest reading of the judge's figures, printed with every summary."""
    scored = min(it["score_rate"] for it in iterations)
    if mode in ("forced", "sampled"):
        parse = min(it["parse_rate"] for it in iterations)
        how = (f"in the worst iteration {parse:.0%} of verdicts wrote a parseable 'Score: X' themselves and "
               f"{scored:.0%} had a score")
    else:
        how = f"{mode} judge (no text is generated); in the worst iteration {scored:.0%} of verdicts had a score"
    return (f"[yellow]Judge: {how}. A small model's judge is the method's weak point: SmolLM2-135M's best judging "
            "format ranks labelled answer pairs at 57% (150 pairs), mostly by length (README, 'A judge with "
            "signal'), so score gaps are weak signal.[/yellow]")
