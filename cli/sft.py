"""`srlm-lite sft` (IFT + EFT supervised fine-tuning -> M1) and `srlm-lite eft build` (EFT data from labels)."""

from __future__ import annotations

from pathlib import Path

import click

from srlm_lite.config import SFTConfig

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
    from srlm_lite import sft as sft_lib
    from srlm_lite.models import resolve_model_path

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
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pairs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def eft_build(pairs_file, out_file, model, adapter, samples, max_tokens, balance_scores, balance_lengths, limit, seed, as_json):
    """Judge labelled pairs with the rubric; keep each verdict pair whose score order agrees with the label."""
    from srlm_lite import eft as eft_lib
    from srlm_lite import evals
    from srlm_lite.config import JudgeConfig
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.runs import write_jsonl_atomic

    try:
        pairs, _ = load_judge_file(pairs_file, limit)
        engine = evals.open_engine(evals.resolve_model(model_path=model, adapter=adapter))
        config = JudgeConfig(mode="forced", judge_samples=samples, max_tokens=max_tokens)  # verdicts need text
        err.print(f"[bold]eft build[/bold]: {len(pairs)} pairs x 2 answers x {samples} verdicts")
        with progress_hooks() as hooks:
            examples, stats = eft_lib.build(engine, pairs, config, seed=seed, balance_scores=balance_scores,
                                            balance_lengths=balance_lengths, progress=hooks.progress)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    write_jsonl_atomic(out_file, examples)
    err.print(stats)
    if as_json:
        print_json_last({"out": out_file, **stats})
    else:
        out.print(f"{stats['examples']} EFT examples from {stats['pairs_agreeing']} of {stats['pairs']} pairs "
                  f"-> {out_file}")
