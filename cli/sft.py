"""`srlm-lite sft` (IFT + EFT supervised fine-tuning -> M1) and `srlm-lite eft build|train|cv` (EFT data from labels,
the expected judge taught at scale, the k-fold measurement)."""

from __future__ import annotations

from pathlib import Path

import click

from srlm_lite.config import EFTTrainConfig, SFTConfig
from srlm_lite.judging import POINTWISE_MODES
from srlm_lite.training.eft import LABEL_SCORES, MAX_RESPONSE_TOKENS, TARGETS, WAYS

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
    """Evaluation fine-tuning: `build` makes EFT data from labelled pairs, `train` teaches the expected judge on score
    examples at scale, `cv` measures EFT k-fold."""


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
@click.option("--from-labels", is_flag=True,
              help="Score examples ('Score: X' after the judge prompt, what the expected judge reads) from the labels "
                   "at scale, one of three ways (--way); no written verdicts. Train them with `eft train`.")
@click.option("--way", type=choice(WAYS), default="labels", show_default=True,
              help="With --from-labels: agreeing = the model's own expected-judge scores of both answers, rounded, "
                   "kept where their order agrees with the label (the paper's way, one forward pass per answer); "
                   "labels = the preferred answer gets 4, the other 2 (no model pass); balanced = labels on as many "
                   "preferred-shorter as preferred-longer pairs.")
@click.option("--max-response-tokens", type=click.IntRange(min=0), default=MAX_RESPONSE_TOKENS, show_default=True,
              help="With --from-labels: answers longer than this many tokens are cut and marked as truncated "
                   "(0 = never).")
@click.option("--label-scores", type=click.IntRange(0, 5), nargs=2, default=LABEL_SCORES, show_default=True,
              help="With --from-labels --way labels|balanced: the preferred answer's score, then the other's.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N pairs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def eft_build(pairs_file, out_file, model, adapter, samples, max_tokens, balance_scores, balance_lengths, target,
              from_labels, way, max_response_tokens, label_scores, limit, seed, as_json):
    """Judge labelled pairs with the rubric; keep each verdict pair whose score order agrees with the label
    (--from-labels: score examples at scale, see --way)."""
    from srlm_lite.config import JudgeConfig
    from srlm_lite.engines import open_engine
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.records import write_jsonl_atomic
    from srlm_lite.runs import resolve_model
    from srlm_lite.training import eft as eft_lib

    _refuse_unused_options(from_labels)
    if from_labels:
        return _build_from_labels(pairs_file, out_file, model, adapter, way, (max_response_tokens, label_scores),
                                  limit, as_json)
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


_VERDICT_OPTIONS = ("samples", "max_tokens", "balance_scores", "balance_lengths", "target", "seed")
_LABEL_OPTIONS = ("way", "max_response_tokens", "label_scores")


def _refuse_unused_options(from_labels: bool) -> None:
    """`eft build`'s two ways take different options: one given on the command line that the chosen way would
    ignore is refused, rather than silently dropped."""
    ctx = click.get_current_context()
    unused = _VERDICT_OPTIONS if from_labels else _LABEL_OPTIONS
    given = [name for name in unused if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags} {'does' if len(given) == 1 else 'do'} nothing "
                               f"{'with' if from_labels else 'without'} --from-labels"
                               + (" (score examples are built from the labels, with no written verdicts)"
                                  if from_labels else ""))


def _build_from_labels(pairs_file, out_file, model, adapter, way, shape, limit, as_json):
    """`eft build --from-labels`: score examples of one way, written as EFT JSONL (prompt, response 'Score: X');
    `shape` = (max response tokens, label scores)."""
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.records import write_jsonl_atomic
    from srlm_lite.runs import resolve_model
    from srlm_lite.training.eft_scale import build_from_labels

    try:
        pairs, _ = load_judge_file(pairs_file, limit)
        spec = resolve_model(model_path=model, adapter=adapter)
        err.print(f"[bold]eft build --from-labels[/bold]: {len(pairs)} pairs, way {way}"
                  + (f" (scored by {spec.label}'s expected judge in MLX)" if way == "agreeing" else ""))
        with progress_hooks() as hooks:
            examples, stats = build_from_labels(pairs, way, spec, max_response_tokens=shape[0],
                                                label_scores=tuple(shape[1]), progress=hooks.progress)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    write_jsonl_atomic(out_file, examples)
    err.print(stats)
    if as_json:
        print_json_last({"out": out_file, **stats})
    else:
        out.print(f"{stats['examples']} score examples from {stats['pairs_kept']} of {stats['pairs']} pairs "
                  f"-> {out_file}   train them: srlm-lite eft train --eft {out_file} --out DIR")


_EFT = EFTTrainConfig()


@eft.command(name="train")
@click.option("--eft", "eft_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Score examples (`eft build --from-labels`, or any EFT JSONL with `prompt` and `score`).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory: adapter/ (mlx-lm files + adapter.gguf), eft_log.jsonl, eft_summary.json; "
                   "`eval judge --adapter DIR` and `iterate --init DIR` take it.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="Base GGUF (default: the embedded one).")
@click.option("--epochs", type=click.IntRange(min=1), default=_EFT.epochs, show_default=True)
@click.option("--learning-rate", type=float, default=_EFT.learning_rate, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=_EFT.batch_size, show_default=True)
@click.option("--lora-layers", type=click.IntRange(min=-1), default=_EFT.lora_layers, show_default=True,
              help="Transformer blocks given LoRA, from the top (-1 = all); the blocks below need no backward pass.")
@click.option("--refresh-every", type=click.IntRange(min=0), default=_EFT.refresh_every, show_default=True,
              help="Steps between recomputations of the rubric prefix's KV cache under the current LoRA (held "
                   "constant in between); 0 = exact training, whole prompts with gradients.")
@click.option("--max-length", type=click.IntRange(min=64), default=_EFT.max_length, show_default=True,
              help="Judge prompts longer than this many tokens are skipped.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=_EFT.checkpoint_every, show_default=True,
              help="Save the LoRA and optimizer state every N steps (rounded up to a multiple of --refresh-every); "
                   "run the same command again after a kill to resume; 0 = never.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N examples.")
@click.option("--seed", type=int, default=_EFT.seed, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def eft_train(eft_file, out_dir, model, epochs, learning_rate, batch_size, lora_layers, refresh_every, max_length,
              checkpoint_every, limit, seed, as_json):
    """Teach the expected judge at scale: loss on the score digit only, the rubric prefix's KV cache reused."""
    from srlm_lite.models.gguf import resolve_model_path
    from srlm_lite.training import eft_scale

    config = EFTTrainConfig(learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                            lora_layers=lora_layers, refresh_every=refresh_every, max_length=max_length,
                            checkpoint_every=checkpoint_every, seed=seed)
    try:
        examples = eft_scale.load_score_examples(eft_file, limit)
        base = resolve_model_path(model)
        err.print(f"[bold]eft train[/bold]: {len(examples)} score examples -> {out_dir}")
        with progress_hooks() as hooks:
            summary = eft_scale.train(examples, Path(out_dir), config, base_model=base, progress=hooks.progress)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(f"loss {summary['loss_start']} -> {summary['loss_end']} over {summary['examples']} examples "
              f"({summary['skipped_too_long']} too long), {summary['steps']} steps, "
              f"{summary['prompt_tokens_per_second']} prompt tokens/s, {summary['seconds']} s")
    if as_json:
        print_json_last(summary)
    else:
        out.print(f"adapter: {summary['adapter']}   measure it: srlm-lite eval judge --pairs PAIRS --adapter {out_dir}")


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
