"""`srlm-lite bench`: our fast paths vs a hand-assembled baseline, side by side, as a table and one JSON line."""

from __future__ import annotations

import click
from rich.table import Table

from srlm_lite.tools.bench import FIGURES

from .options import choice
from .ui import err, out, print_json_last


@click.command()
@click.option("--quick", is_flag=True, help="Small inputs: a few minutes on 2 cores (the CI smoke test).")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="Labelled pairs JSONL (as `eval judge --pairs`): judge agreement is reported beside judge speed, "
                   "and training uses these pairs. Without it, the bench's own sampled answers are used.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="GGUF model (default: the embedded one).")
@click.option("--only", multiple=True, type=choice(FIGURES), help="Only these figures (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def bench(quick, pairs_file, model, only, as_json):
    """Measure sampling, judging, training, BLAS and one iteration: ours vs the baseline, in one process."""
    from srlm_lite.tools.bench import FULL, QUICK, run_bench

    try:
        result = run_bench(QUICK if quick else FULL, model=model, pairs_file=pairs_file, only=tuple(only),
                           say=lambda m: err.print(f"[dim]{m}[/dim]"))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(bench_table(result["figures"]))
    if as_json:
        print_json_last(result)
    else:
        out.print("ratio > 1: ours is better (time: baseline / ours; rate: ours / baseline)")


def bench_table(figures: list[dict]) -> Table:
    table = Table(title="srlm-lite bench (ratio > 1: ours is better)")
    for name in ("figure", "unit", "ours", "baseline", "ratio", "notes"):
        table.add_column(name, justify="right" if name in ("ours", "baseline", "ratio") else "left")
    for f in figures:
        notes = f.get("skipped") or _notes(f)
        table.add_row(f["name"], f["unit"], _num(f["ours"]), _num(f["baseline"]),
                      "-" if f["ratio"] is None else f"{f['ratio']:.2f}x", notes)
    return table


def _notes(f: dict) -> str:
    if f["name"].startswith("judging"):
        ours, base = f.get("agreement_ours"), f.get("agreement_baseline")
        agreement = (f"agreement {ours['accuracy']:.0%} vs {base['accuracy']:.0%} (n={ours['n']})"
                     if ours and base else "no labelled pairs")
        return f"{agreement}; rank corr. {f.get('rank_correlation_with_baseline')}"
    if f["name"] == "training":
        return f"{f['roofline_fraction']:.0%} of {f['matmul_roofline_gflops']} GFLOP/s matmul"
    if f["name"] == "iteration":
        return f"peak RSS {f['peak_rss_mb_ours']} vs {f['peak_rss_mb_baseline']} MB"
    return ""


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
