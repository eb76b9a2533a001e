"""`srlm-lite sft` (IFT + EFT supervised fine-tuning -> M1) and `srlm-lite eft build` (EFT data from labels)."""

from __future__ import annotations

from pathlib import Path

import click

from srlm_lite.config import SFTConfig
from srlm_lite.judging import POINTWISE_MODES
from srlm_lite.training.eft import TARGETS

from .options import choice
from .ui import err, out, print_json_last, progress_hooks

_SFT = SFTConfig()


@click.command()
@click.option("--ift", "ift_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Instruction fine-tuning JSONL: `prompt` (or `instruction`) and `response` (or `output`).")
@click.option("--eft", "eft_file", type=click.Path(exists=True, dir_okay=False),
              help="Evaluation fine-tuning JSONL (from `srlm-lite eft build`): judge prompt -> verdict.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: adapter/ (mlx-lm files + adapter.gguf), sft_log.jsonl, sft_summary.json.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="Base GGUF (default: the embedded one).")
@click.option("--epochs", type=click.IntRange(min=1), default=_SFT.epochs, show_default=True)
@click.option("--learning-rate", type=float, default=_SFT.learning_rate, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=_SFT.batch_size, show_default=True)
@click.option("--max-length", type=click.IntRange(min=64), default=_SFT.max_length, show_default=True,
              help="Examples longer than this many tokens are skipped.")
@click.option("--seed", type=int, default=_SFT.seed, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def sft(ift_file, eft_file, out_dir, model, epochs, learning_rate, batch_size, max_length, seed, as_json):
    """Supervised LoRA fine-tuning (loss on response tokens only): the M1 that `iterate --init DIR` starts from."""
    from srlm_lite.models.gguf import resolve_model_path
    from srlm_lite.training import sft as sft_lib

    config = SFTConfig(learning_rate=learning_rate, epochs=epochs, batch_size=batch_size, max_length=max_length,
                       seed=seed)
    try:
        examples = sft_lib.load_examples(ift_file, "ift")
        if eft_file:
            examples += sft_lib.load_examples(eft_file, "eft")
        base = resolve_model_path(model)
        err.print(f"[bold]srlm-lite sft[/bold]: {len(examples)} examples -> {out_dir}")
        with progress_hooks() as hooks:
            summary = sft_lib.run(examples, Path(out_dir), config, base_model=base, progress=hooks.progress)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(f"loss {summary['loss_start']} -> {summary['loss_end']} over {summary['examples']} examples "
              f"({summary['skipped_too_long']} too long), {summary['seconds']} s")
    if as_json:
        print_json_last(summary)
    else:
        out.print(f"adapter: {summary['adapter']}   start a run from it: srlm-lite iterate --init {out_dir}")


@click.group()
def eft() -> None:
    """Evaluation fine-tuning data: `build` judges labelled pairs and keeps the verdicts that agree."""


_TARGET_HELP = ("What each EFT example's answer is: verdict = the judge's justification + 'Score: X' (the paper; "
                "what the forced and sampled judges write); score = 'Score: X' alone (what the default expected "
                "judge reads: the digit right after a forced 'Score: ').")


@eft.command(name="build")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled pairs JSONL: instruction, response_a, response_b, preferred (a/b).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="EFT JSONL to write.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="Judge GGUF (default: the embedded one).")
@click.option("--adapter", type=click.Path(exists=True), help="Judge with this LoRA applied (`sft --out` dir or GGUF).")
@click.option("--samples", type=click.IntRange(min=1), default=3, show_default=True,
              help="Verdicts per answer; each sample's two verdicts are kept when they agree with the label.")
@click.option("--max-tokens", type=click.IntRange(min=8), default=96, show_default=True,
              help="Token limit of a justification.")
@click.option("--balance-scores", is_flag=True, help="Keep as many examples of each score as of the rarest.")
@click.option("--balance-lengths", is_flag=True,
              help="Keep as many pairs where the preferred answer is longer as where it is shorter.")
@click.option("--target", type=choice(TARGETS), default="verdict", show_default=True,
              help=_TARGET_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pairs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def eft_build(pairs_file, out_file, model, adapter, samples, max_tokens, balance_scores, balance_lengths, target, limit,
              seed, as_json):
    """Judge labelled pairs with the rubric; keep each verdict pair whose score order agrees with the label."""
    from srlm_lite.config import JudgeConfig
    from srlm_lite.engines import open_engine
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.records import write_jsonl_atomic
    from srlm_lite.runs import resolve_model
    from srlm_lite.training import eft as eft_lib

    try:
        pairs, _ = load_judge_file(pairs_file, limit)
        engine = open_engine(resolve_model(model_path=model, adapter=adapter))
        config = JudgeConfig(mode="forced", judge_samples=samples, max_tokens=max_tokens)  # verdicts need text
        err.print(f"[bold]eft build[/bold]: {len(pairs)} pairs x 2 answers x {samples} verdicts")
        with progress_hooks() as hooks:
            examples, stats = eft_lib.build(engine, pairs, config, seed=seed, balance_scores=balance_scores,
                                            balance_lengths=balance_lengths, progress=hooks.progress)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    write_jsonl_atomic(out_file, [{**e, "response": eft_lib.target_text(e, target)} for e in examples])
    err.print(stats)
    if as_json:
        print_json_last({"out": out_file, **stats})
    else:
        out.print(f"{stats['examples']} EFT examples from {stats['pairs_agreeing']} of {stats['pairs']} pairs "
                  f"-> {out_file}")


@eft.command(name="cv")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled pairs JSONL: instruction, response_a, response_b, preferred (a/b).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: fold_<i>/ (held-out pairs, EFT data, the fold's M1, judge results) and "
                   "cv_summary.json. Rerun with the same --out to continue where it stopped.")
@click.option("--folds", type=click.IntRange(min=2), default=2, show_default=True,
              help="k: fold i holds the pairs at positions i, i+k, ...; EFT is built from the others.")
@click.option("--ift", "ift_file", type=click.Path(exists=True, dir_okay=False),
              help="Instruction fine-tuning JSONL trained on beside each fold's EFT examples (as `sft --ift`).")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="Base GGUF (default: the embedded one).")
@click.option("--samples", type=click.IntRange(min=1), default=3, show_default=True,
              help="EFT verdicts per answer (as `eft build --samples`).")
@click.option("--max-tokens", type=click.IntRange(min=8), default=96, show_default=True,
              help="Token limit of an EFT justification.")
@click.option("--balance-scores", is_flag=True, help="EFT: as many examples of each score as of the rarest.")
@click.option("--balance-lengths", is_flag=True, help="EFT: as many longer-preferred as shorter-preferred pairs.")
@click.option("--target", type=choice(TARGETS), default="verdict", show_default=True,
              help=_TARGET_HELP)
@click.option("--epochs", type=click.IntRange(min=1), default=_SFT.epochs, show_default=True, help="SFT epochs.")
@click.option("--learning-rate", type=float, default=_SFT.learning_rate, show_default=True, help="SFT learning rate.")
@click.option("--judge-mode", "judge_modes", multiple=True, type=choice(POINTWISE_MODES),
              help="Judge mode(s) measured on the held-out pairs (repeatable; default: expected, iterate's default).")
@click.option("--limit", type=click.IntRange(min=2), help="Only the first N pairs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def eft_cv(pairs_file, out_dir, folds, ift_file, model, samples, max_tokens, balance_scores, balance_lengths, target,
           epochs, learning_rate, judge_modes, limit, seed, as_json):
    """k-fold: EFT from the other folds -> M1 by SFT -> raw and M1 judges measured on the held-out fold."""
    from rich.table import Table

    from srlm_lite.config import JudgeConfig
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.models.gguf import resolve_model_path
    from srlm_lite.training import eft_cv
    from srlm_lite.training import sft as sft_lib

    settings = eft_cv.CVSettings(
        folds=folds, eft=JudgeConfig(mode="forced", judge_samples=samples, max_tokens=max_tokens),
        balance_scores=balance_scores, balance_lengths=balance_lengths, target=target,
        sft=SFTConfig(epochs=epochs, learning_rate=learning_rate, seed=seed),
        judge_modes=tuple(judge_modes) or ("expected",), seed=seed)
    try:
        pairs, _ = load_judge_file(pairs_file, limit)
        ift = sft_lib.load_examples(ift_file, "ift") if ift_file else []
        base = resolve_model_path(model)
        err.print(f"[bold]eft cv[/bold]: {len(pairs)} pairs, {folds} folds, {len(ift)} IFT examples -> {out_dir}")
        with progress_hooks() as hooks:
            result = eft_cv.run(pairs, Path(out_dir), settings, base_model=base, ift_examples=ift,
                                say=lambda m: err.print(f"[dim]{m}[/dim]"), progress=hooks.progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title=f"judge accuracy on held-out pairs, {folds}-fold (ties half; 95% interval)")
    for name in ("judge", "accuracy", "preferred longer", "preferred shorter", "picks longer"):
        table.add_column(name)
    for key, summary in result["pooled"].items():
        by_length = summary["by_length"]
        table.add_row(key, _pct_ci(summary), _pct_ci(by_length["preferred_longer"]),
                      _pct_ci(by_length["preferred_shorter"]),
                      "-" if summary["judge_picks_longer"] is None else f"{summary['judge_picks_longer']:.1%}")
    table.add_row("longer wins", _pct_ci(next(iter(result["pooled"].values()))["longer_wins"]), "", "", "")
    err.print(table)
    if as_json:
        print_json_last(result)
    else:
        out.print(f"per fold and pooled: {Path(out_dir) / eft_cv.SUMMARY}")


def _pct_ci(block: dict) -> str:
    if block.get("accuracy") is None:
        return "-"
    return f"{block['accuracy']:.1%} [{block['ci_low']:.1%}, {block['ci_high']:.1%}] (n={block['n']})"
