"""Terminal output for the CLI: rich progress bars on stderr, summary tables, one JSON line for machines."""

from __future__ import annotations

import contextlib
import errno
import json
import sys

import click
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
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
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
    table = Table(title="srlm-lite run summary (loss: unseen batches = each first-epoch step before training on it; "
                        "held-out = pairs never trained on; fit = the trained pairs after training)",
                  show_lines=False)
    columns = [
        ("iter", "iteration", "{}"), ("prompts", "prompts_kept", "{}"), ("responses", "responses", "{}"),
        ("parse rate", "parse_rate", "{:.0%}"), ("scored", "score_rate", "{:.0%}"), ("pairs", "pairs", "{}"),
        ("chosen", "mean_score_chosen", "{:.2f}"), ("rejected", "mean_score_rejected", "{:.2f}"),
        ("loss: unseen batches", "online_loss", "{:.3f}"), ("held-out loss / acc", None, None),
        ("fit loss / acc", None, None), ("resp. chars", "mean_response_chars", "{:.0f}"),
        ("minutes", None, None),
    ]
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    for it in iterations:
        row = []
        for name, key, fmt in columns:
            if name == "held-out loss / acc":
                row.append("-" if it.get("eval_loss") is None else
                           f"{it['eval_loss']:.3f} / {it['eval_reward_accuracy']:.2f} (n={it['pairs_held_out']})")
            elif name == "fit loss / acc":
                row.append(f"{it['dpo_loss_end']:.3f} / {it['reward_accuracy_end']:.2f}")
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
    for name in ("model", "judge accuracy", "IFEval prompt strict / loose", "IFEval counting no loop (looping)",
                 "h2h vs M0: W-T-L, win rate"):
        table.add_column(name, justify="right")
    for model, results in evals.items():
        judge, ifeval, h2h = (results.get(k) or {} for k in ("judge", "ifeval", "h2h"))
        table.add_row(
            model,
            f"{judge['accuracy']:.1%} (n={judge['n']})" if judge.get("accuracy") is not None else "-",
            f"{ifeval['prompt_strict']:.1%} / {ifeval['prompt_loose']:.1%}" if ifeval.get("n") else "-",
            f"{ifeval['prompt_loose_nondegenerate']:.1%} ({ifeval['degenerate']:.1%})"
            if ifeval.get("prompt_loose_nondegenerate") is not None else "-",
            f"{h2h['wins']}-{h2h['ties']}-{h2h['losses']}, {h2h['win_rate']:.1%}" if h2h.get("n") else "-",
        )
    return table


# ---------------------------------------------------------------------------------------------- errors

# OSErrors that mean the user pointed at the wrong place (exit 2, like a usage error); others exit 1
_INPUT_ERRNOS = (errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                 errno.ENAMETOOLONG)


def _is_input_error(exc: BaseException | None) -> bool:
    from srlm_lite.errors import InputError
    from srlm_lite.models.gguf import UnsupportedModelError

    if isinstance(exc, (InputError, UnsupportedModelError, UnicodeDecodeError, FileExistsError, FileNotFoundError,
                        NotADirectoryError, IsADirectoryError, PermissionError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _INPUT_ERRNOS and not _is_full(exc)


def _is_full(exc: BaseException | None) -> bool:
    from srlm_lite.errors import is_disk_full

    return exc is not None and is_disk_full(exc)


def _message(exc: BaseException) -> str:
    """One line: an OSError as 'PATH: what went wrong', anything else its own message."""
    from srlm_lite.errors import DiskFullError

    if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        hint = "; free some space, then continue with --resume" if _is_full(exc) else ""
        return f"{where}{exc.strerror}{hint}"
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
    return " ".join(str(exc).split()) or type(exc).__name__


def clear_error(exc: Exception) -> Exception | None:
    """What the CLI shows for an exception: a ClickException of one line (exit 2 for a user's input or usage, 1 for
    the machine's condition: a full disk, a locked run, diverged training), the exception itself when click handles
    it already, or None for a bug (its traceback is kept)."""
    from srlm_lite.errors import AdapterNotServed, DiskFullError, RunLockedError, ServerError, TrainingDiverged

    if isinstance(exc, (click.exceptions.Exit, click.exceptions.Abort)):
        return exc
    if isinstance(exc, click.ClickException):
        cause = exc.__cause__
        if isinstance(exc, click.UsageError) and _is_input_error(cause):
            error = click.ClickException(_message(cause))  # no usage block: the message says what to change
            error.exit_code = 2
            return error
        if _is_input_error(cause) and not isinstance(exc, click.UsageError):
            exc.exit_code = 2
        return exc
    known = (DiskFullError, RunLockedError, TrainingDiverged, ServerError, AdapterNotServed, OSError)
    if _is_input_error(exc) or isinstance(exc, known) or _is_full(exc):
        error = click.ClickException(_message(exc))
        error.exit_code = 2 if _is_input_error(exc) else 1
        return error
    return None
