"""What every stage of iteration t needs: the run's config and paths, M_t, the hooks, and M_t's engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..engines import EngineOptions, open_engine
from ..hooks import Hooks
from ..records import read_jsonl
from ..runs import ModelSpec, RunPaths, iteration_dir


@dataclass
class IterationContext:
    """Iteration t samples, judges and trains with M_t (`model`: the base plus M_t's adapter, if any); the engine
    serving it is opened on first use and released before training."""

    config: RunConfig
    paths: RunPaths
    t: int
    model: ModelSpec
    hooks: Hooks
    _engine: object = None

    @property
    def dir(self) -> Path:
        return iteration_dir(self.paths.root, self.t)

    @property
    def engine(self):
        if self._engine is None:
            self._engine = open_engine(self.model, EngineOptions.from_config(self.config.model))
        return self._engine

    def release_engine(self) -> None:
        self._engine = None

    def require(self, name: str, stage: str) -> list[dict]:
        """The records of an earlier stage's finished file; a clear error when that stage has not run."""
        path = self.dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the '{stage}' stage first")
        return read_jsonl(path)
