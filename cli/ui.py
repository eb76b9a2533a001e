"""Terminal output for the CLI: rich progress bars on stderr, summary tables, one JSON line for machines."""

from __future__ import annotations

import contextlib
import json
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.progress import ProgressColumn
from rich.table import Table
from rich.text import Text

# Wide enough for the summary table when stderr is a log file rather than a terminal.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 132)
out = Console()

class RateColumn(ProgressColumn):
    """Items per second (or seconds per item when slower than one a second)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("  -  ", style="progress.data.speed")
        label = f"{speed:.2f}/s" if speed >= 1 else f"{1 / speed:.1f}s/it"
        return Text(label, style="progress.data.speed")


STAGE_LABELS = {
    "instructions": "self-instruct (kept prompts)",
    "responses": "candidate responses",
    "judge": "judged responses",
    "reference": "reference log-probs",
    "train": "DPO steps",
}


@contextlib.contextmanager
def progress_hooks(quiet: bool = False):
    """Yield a `Hooks` whose progress callback drives one rich bar per stage (items, rate, time left)."""
    from srlm_lite.hooks import Hooks

    if quiet:
        yield Hooks(event=lambda m: None)
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bars:
        tasks: dict[str, int] = {}
        prefix = {"value": ""}

        def progress(stage: str, done: int, total: int) -> None:
            key = prefix["value"] + stage
            if key not in tasks:
                tasks[key] = bars.add_task(f"{prefix['value']}{STAGE_LABELS.get(stage, stage)}", total=total)
            bars.update(tasks[key], completed=done, total=total)

        def event(message: str) -> None:
            if message.startswith("iteration "):
                prefix["value"] = message.split(":")[0] + " | "
            bars.console.print(f"[dim]{message}[/dim]")

        yield Hooks(progress=progress, event=event)


def print_json_last(data) -> None:
    """One JSON object as the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(data, ensure_ascii=False, default=str))


def summary_table(iterations: list[dict]) -> Table:
    table = Table(title="srlm-lite run summary", show_lines=False)
    columns = [
        ("iter", "iteration", "{}"), ("prompts", "prompts_kept", "{}"), ("responses", "responses", "{}"),
        ("parse rate", "parse_rate", "{:.0%}"), ("scored", "score_rate", "{:.0%}"), ("pairs", "pairs", "{}"),
        ("chosen", "mean_score_chosen", "{:.2f}"), ("rejected", "mean_score_rejected", "{:.2f}"),
        ("DPO loss", None, None), ("reward acc", None, None), ("resp. chars", "mean_response_chars", "{:.0f}"),
        ("minutes", None, None),
    ]
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    for it in iterations:
        row = []
        for name, key, fmt in columns:
            if name == "DPO loss":
                row.append(f"{it['dpo_loss_start']:.3f} -> {it['dpo_loss_end']:.3f}")
            elif name == "reward acc":
                row.append(f"{it['reward_accuracy_start']:.2f} -> {it['reward_accuracy_end']:.2f}")
            elif name == "minutes":
                row.append(f"{sum(it['seconds'].values()) / 60:.1f}")
            else:
                value = it.get(key)
                row.append("-" if value is None else fmt.format(value))
        table.add_row(*row)
    return table


def eval_table(evals: dict[str, dict]) -> Table:
    """`iterate --eval` results: one row per model M_k, the headline figure of each evaluation."""
    table = Table(title="evaluations (files in the run directory)")
    for name in ("model", "judge accuracy", "IFEval prompt strict / loose", "h2h vs M0: W-T-L, win rate"):
        table.add_column(name, justify="right")
    for model, results in evals.items():
        judge, ifeval, h2h = (results.get(k) or {} for k in ("judge", "ifeval", "h2h"))
        table.add_row(
            model,
            f"{judge['accuracy']:.1%} (n={judge['n']})" if judge.get("accuracy") is not None else "-",
            f"{ifeval['prompt_strict']:.1%} / {ifeval['prompt_loose']:.1%}" if ifeval.get("n") else "-",
            f"{h2h['wins']}-{h2h['ties']}-{h2h['losses']}, {h2h['win_rate']:.1%}" if h2h.get("n") else "-",
        )
    return table
