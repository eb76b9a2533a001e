"""`srlm-lite report DIR`: report.md, a self-contained report.html and PNG plots of a run, with a model gallery."""

from __future__ import annotations

from pathlib import Path

import click

from .ui import err, out, print_json_last


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Where to write the report. "
              "[default: RUN_DIR/report]")
@click.option("--no-gallery", is_flag=True, help="Skip the gallery (it loads every model M0..Mk once; "
              "its answers are cached in gallery.jsonl, so later reports are instant).")
@click.option("--gallery-tokens", type=int, default=192, show_default=True,
              help="Token limit of one gallery answer.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def report(run_dir, out_dir, no_gallery, gallery_tokens, as_json):
    """Plots and tables of a run: data funnel, scores, DPO curves, lengths, the judge, evaluations, a gallery."""
    from srlm_lite import report as lib
    from srlm_lite.tools.gallery import FILE, GallerySettings, build_gallery

    target = Path(out_dir) if out_dir else Path(run_dir) / lib.REPORT_DIR
    gallery = None
    if not no_gallery:
        target.mkdir(parents=True, exist_ok=True)
        try:
            with err.status("gallery: answering the gallery prompts with M0..Mk...") as status:
                gallery = build_gallery(run_dir, target / FILE, settings=GallerySettings(max_tokens=gallery_tokens),
                                        event=lambda m: status.update(m))
        except (FileNotFoundError, ImportError, ValueError) as exc:
            err.print(f"[yellow]no gallery: {exc}[/yellow]")
    try:
        files = lib.write_report(run_dir, target, gallery=gallery)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(f"{len(files.plots)} plots, {len(files.iterations)} iteration(s)"
              + ("" if gallery else ", no gallery"))
    out.print(f"report: {files.html}")
    if as_json:
        print_json_last({"markdown": str(files.markdown), "html": str(files.html),
                         "plots": [str(p) for p in files.plots], "gallery": bool(gallery),
                         "iterations": files.iterations})
