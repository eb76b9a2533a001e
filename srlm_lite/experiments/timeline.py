"""Where an experiment's time went: one line per finished step (M0's measures, an arm's iteration, a model's
measures) in `timeline.jsonl`, appended durably as the step ends. A session that is killed keeps the time of the
steps it finished, so a long experiment run over several sittings still says how long it took; a step finished
earlier and skipped on resume is not counted twice."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..records import append_bytes_durably, read_jsonl, write_jsonl_atomic

FILE = "timeline.jsonl"


def m0_step() -> str:
    return "M0 measures"


def iteration_step(arm: str, k: int) -> str:
    return f"{arm} iteration {k}"


def measure_step(arm: str, k: int) -> str:
    return f"{arm} M{k} measures"


class Timeline:
    """The steps recorded so far in `out`/timeline.jsonl, by name."""

    def __init__(self, out: str | Path):
        self.path = Path(out) / FILE
        self.steps = read_timeline(out)
        if self.path.exists() and not self.path.read_bytes().endswith(b"\n"):  # a kill mid-append: cut the tail
            write_jsonl_atomic(self.path, self.steps.values())

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block; record it when it ends without an error, unless a session recorded it before."""
        started = time.perf_counter()
        yield
        if name in self.steps:
            return
        record = {"step": name, "seconds": round(time.perf_counter() - started, 1),
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        append_bytes_durably(self.path, (json.dumps(record) + "\n").encode("utf-8"))
        self.steps[name] = record


def read_timeline(out: str | Path) -> dict[str, dict]:
    """{step: {"step", "seconds", "finished_at"}}; a torn last line (a kill mid-write) is skipped."""
    path = Path(out) / FILE
    found: dict[str, dict] = {}
    for record in read_jsonl(path, skip_bad=True) if path.exists() else []:
        if isinstance(record.get("step"), str) and isinstance(record.get("seconds"), (int, float)):
            found.setdefault(record["step"], record)
    return found


def time_by_model(steps: dict[str, dict], arms: list[str], iterations: int) -> dict:
    """Seconds per arm per iteration (its training run and its model's measures), M0's measures and the total of
    every recorded step (pure)."""
    seconds = lambda name: steps.get(name, {}).get("seconds")  # noqa: E731
    rows = {arm: [{"iteration": k, "run": seconds(iteration_step(arm, k)), "measures": seconds(measure_step(arm, k))}
                  for k in range(1, iterations + 1)] for arm in arms}
    return {"m0_measures": seconds(m0_step()), "arms": rows,
            "total": round(sum(s["seconds"] for s in steps.values()), 1)}
