"""`srlm-lite experiment NAME`: the method's three claims as experiments a teacher can run, one command each."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from srlm_lite.experiments import NAMES

from .options import choice
from .ui import err, out, print_json_last, progress_hooks

HELP = """Run one of the method's claims as an experiment: arms that start from the same M0 with the same seeds
(arms that differ only in training share iteration 1's data), every model M_0..M_K measured on data never trained
on (KL to M0, distinct-2, repetition, length, IFEval, the judge on labelled pairs), and a side-by-side report
(report.md, report.html, PNGs). Run the same command again to continue a stopped experiment.

\b
  sft-vs-dpo         arm dpo (the default loop) against arm sft (--objective sft: the chosen answers only)
  anchor             DPO with beta 0.01, 0.1 and 1.0 against the unanchored sft arm, 5 iterations
  judge-vs-generate  on IFEval prompts: how often its candidates pass, against how often its own judge picks
                     a passing candidate over a failing one; the judge's pick of 4 against a random pick

\b
Wall time measured on an idle 2-core x86_64 CPU, no GPU: --quick sft-vs-dpo 7.2 min, anchor 6.3 min,
judge-vs-generate 5.9 min. The full presets take hours (from the measured time of their steps here: about 1.8,
5.6 and 2.2 hours; docs/experiments.md): stop them at any point, continue with the same command, and see what is
measured so far with --report-only; timeline.jsonl keeps the time of every finished step. The experiments overlap
(the default loop is sft-vs-dpo's dpo arm, judge-vs-generate's arm and anchor's beta-0.1 arm): --reuse takes what
another experiment already made (after a full sft-vs-dpo, about 1.8 hours for judge-vs-generate and, measured, 3.1
for anchor).
"""


@click.command(help=HELP)
@click.argument("name", type=choice(NAMES))
@click.option("--quick", is_flag=True, help="The demo preset: fewer prompts, iterations and measured items, "
              "under 15 minutes on a 2-core CPU (the mechanics, not the conclusions: see the README).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Experiment folder. [default: runs/experiments/NAME, or NAME-quick]")
@click.option("--iterations", type=click.IntRange(min=1), help="Iterations per arm. [default: the preset's]")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder holding ifeval/dev.jsonl, alpaca_eval_prefs/dev.jsonl and mt_bench/question.jsonl. "
                   "[default: $SRLM_DATA, else ../shared/data]")
@click.option("--ifeval", type=click.Path(exists=True, dir_okay=False), help="IFEval prompts (JSONL).")
@click.option("--pairs", type=click.Path(exists=True, dir_okay=False), help="Labelled answer pairs (JSONL).")
@click.option("--drift-prompts", type=click.Path(exists=True, dir_okay=False),
              help="Prompts for KL, diversity and length (JSONL; e.g. MT-Bench questions).")
@click.option("--reuse", "reuse", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another experiment folder (repeatable) whose finished work this one takes instead of doing it "
                   "again: iterations of arms with the same settings and M0, and measures of the same models with "
                   "the same measure settings (e.g. judge-vs-generate and anchor from sft-vs-dpo).")
@click.option("--report-only", is_flag=True, help="Run nothing: write the report of the experiment folder as it "
              "stands (a stopped or still running experiment: the models measured so far).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def experiment(name, quick, out_dir, iterations, data_dir, ifeval, pairs, drift_prompts, reuse, report_only,
               as_json):
    from srlm_lite.experiments import data_files, plan_experiment, run_experiment

    target = Path(out_dir or f"runs/experiments/{name}{'-quick' if quick else ''}")
    if report_only:
        return _report_only(name, target, as_json)
    try:
        data = data_files(data_dir, ifeval=ifeval, pairs=pairs, drift=drift_prompts)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    plan = plan_experiment(name, target, quick=quick, iterations=iterations, data=data, reuse=reuse)
    arms = ", ".join(plan.configs)
    err.print(f"[bold]srlm-lite experiment {name}[/bold] -> {target}  ({'quick' if quick else 'full'} preset, "
              f"{plan.iterations} iteration(s) per arm; arms: {arms})")
    err.print(f"[dim]{plan.experiment.claim}[/dim]")
    with progress_hooks() as hooks:  # a user's error (another experiment in --out, a locked folder): one line
        result = run_experiment(plan, hooks)
    err.print(results_table(result["arms"]))
    err.print(f"experiment folder: {target}   this session {result['seconds'] / 60:.1f} min")
    out.print(f"report: {result['report']}")
    if as_json:
        print_json_last(result)


def _report_only(name: str, target: Path, as_json: bool) -> None:
    from srlm_lite.experiments import PLAN_FILE, report_so_far
    from srlm_lite.records import read_json

    plan_file = target / PLAN_FILE
    if plan_file.exists() and read_json(plan_file).get("experiment") != name:
        raise click.UsageError(f"{target} holds the experiment {read_json(plan_file).get('experiment')!r}, not "
                               f"{name!r}")
    result = report_so_far(target)
    err.print(results_table(result["arms"]))
    if result.get("unfinished"):
        err.print(f"[yellow]{result['unfinished']}[/yellow]")
    out.print(f"report: {result['report']}")
    if as_json:
        print_json_last(result)


def results_table(arms: dict[str, list[dict]]) -> Table:
    """One row per arm per model: the headline measures."""
    table = Table(title="experiment: every model, measured on data never trained on")
    columns = (("KL to M0", "kl_to_m0", "{:.2f}"), ("IFEval loose", "ifeval_prompt_loose", "{:.1%}"),
               ("IFEval, no loop", "ifeval_prompt_loose_nondegenerate", "{:.1%}"),
               ("judge acc.", "judge_accuracy", "{:.1%}"), ("tokens", "mean_tokens", "{:.0f}"),
               ("distinct-2", "distinct_2", "{:.3f}"), ("repetition", "repetition", "{:.3f}"),
               ("Δlogp chosen", "delta_logp_chosen", "{:+.1f}"), ("Δlogp rejected", "delta_logp_rejected", "{:+.1f}"),
               ("held-out acc.", "heldout_reward_accuracy", "{:.0%}"),
               ("gen. pass", "generate_pass", "{:.1%}"), ("judge pick", "best_of_n_pass", "{:.1%}"),
               ("recognise", "recognise", "{:.1%}"))
    shown = [c for c in columns if any(r.get(c[1]) is not None for rows in arms.values() for r in rows)]
    for title in ["arm", "model"] + [c[0] for c in shown]:
        table.add_column(title, justify="right")
    for arm, rows in arms.items():
        for r in rows:
            table.add_row(arm, f"M{r['iteration']}",
                          *["-" if r.get(key) is None else fmt.format(r[key]) for _, key, fmt in shown])
    return table
