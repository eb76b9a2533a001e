"""Reading a run directory for the report: every iteration folder, finished or not, and any evaluation files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..records import read_json, read_jsonl
from ..runs import CONFIG_FILE, MANIFEST
from ..stages import FILES as STAGE_FILES
from ..training import SUMMARY_FILE as TRAIN_SUMMARY


@dataclass
class Iteration:
    """What one `iter_K/` folder holds; for an unfinished iteration, whatever its stages have written so far."""

    t: int
    complete: bool
    manifest: dict | None
    records: dict[str, list[dict]]  # per stage: the final JSONL, or the .partial one of a stage still running
    train_summary: dict | None = None
    of: int = 0  # how many iterations the run has or plans (for colours that stay the same across plots)

    @property
    def last_stage(self) -> str | None:
        written = [s for s in STAGE_FILES if self.records[s]]
        return written[-1] if written else None

    @property
    def status(self) -> str:
        if self.complete:
            return "complete"
        stage = self.last_stage
        return f"partial (in {stage})" if stage else "partial (nothing yet)"


@dataclass
class Run:
    root: Path
    config: dict
    manifest: dict | None
    iterations: list[Iteration] = field(default_factory=list)
    evals: list[tuple[str, object]] = field(default_factory=list)


def load_run(run_dir: str | Path) -> Run:
    """Read every iteration folder (finished or not) and any evaluation results of a run directory."""
    root = Path(run_dir)
    if not (root / CONFIG_FILE).exists() and not list(root.glob("iter_*")):
        raise FileNotFoundError(f"{root} is not a srlm-lite run directory (no config.toml, no iter_* folders)")
    config = {}
    if (root / CONFIG_FILE).exists():
        import tomllib

        config = tomllib.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    manifest = _json_or_none(root / MANIFEST)
    iterations = []
    numbers = sorted(int(p.name[5:]) for p in root.glob("iter_*") if p.is_dir() and p.name[5:].isdigit())
    for t in numbers:
        d = root / f"iter_{t}"
        records = {}
        for stage, name in STAGE_FILES.items():
            final = d / name
            records[stage] = read_jsonl(final if final.exists() else d / (name + ".partial"))
        it_manifest = _json_or_none(d / MANIFEST)
        iterations.append(Iteration(t=t, complete=it_manifest is not None, manifest=it_manifest, records=records,
                                    train_summary=_json_or_none(d / TRAIN_SUMMARY),
                                    of=max([config.get("iterations", 0), *numbers])))
    return Run(root=root, config=config, manifest=manifest, iterations=iterations, evals=find_evals(root, numbers))


def find_evals(root: Path, iterations: list[int]) -> list[tuple[str, object]]:
    """(name relative to the run, parsed JSON) of `evals/*.json` and `iter_K/eval_*.json`; unreadable files skipped."""
    paths = sorted((root / "evals").glob("*.json")) if (root / "evals").is_dir() else []
    for t in iterations:
        paths += sorted((root / f"iter_{t}").glob("eval_*.json"))
    found = []
    for path in paths:
        data = _json_or_none(path)
        if data is not None:
            found.append((str(path.relative_to(root)), data))
    return found


def _json_or_none(path: Path):
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
