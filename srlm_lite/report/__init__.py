"""`report`: a run directory's figures as report.md, a self-contained report.html and PNG plots (matplotlib, Agg).

load (reading the run) -> metrics (pure figures) -> plots (PNG) and sections (text, tables) -> render (Markdown,
HTML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..records import write_text_atomic
from .load import Iteration, Run, find_evals, load_run
from .metrics import (eval_kind, eval_rows, eval_series, flatten, funnel, gaps, iteration_row, judge_agreement,
                      length_bias, model_index, moving_average, scores, verdict_spread)
from .render import Doc
from .sections import body_sections, evals_section, examples_section, gallery_section, header, summary

REPORT_DIR = "report"

__all__ = ["REPORT_DIR", "Iteration", "ReportFiles", "Run", "eval_kind", "eval_rows", "eval_series", "find_evals",
           "flatten", "funnel", "gaps", "iteration_row", "judge_agreement", "length_bias", "load_run", "model_index",
           "moving_average", "scores", "verdict_spread", "write_report"]


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    plots: list[Path]
    iterations: list[dict]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *,
                 gallery: list[dict] | None = None) -> ReportFiles:
    """Write report.md, report.html (PNGs inlined) and the PNG plots for a run; `gallery` = gallery.py's records."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir else run.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    its = [it for it in run.iterations if it.records["instructions"] or it.complete]
    rows = [iteration_row(it) for it in its]
    doc = Doc(out)
    plots: list[Path] = []
    header(doc, run, rows)
    if not its:
        doc.p("This run has no iteration with any output yet.")
    else:
        summary(doc, rows)
        plots += body_sections(doc, its, rows, out)
    plots += evals_section(doc, run, out)
    gallery_section(doc, gallery)
    examples_section(doc, its)
    md = write_text_atomic(out / "report.md", doc.markdown())
    page = write_text_atomic(out / "report.html", doc.html(f"srlm-lite report: {run.root.name}"))
    return ReportFiles(markdown=md, html=page, plots=plots, iterations=rows)
