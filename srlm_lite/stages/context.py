"""What every stage of iteration t needs: the run's config and paths, M_t, the hooks, and M_t's engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import RunConfig
from ..engines import EngineOptions, open_engine
from ..hooks import Hooks
from ..records import read_jsonl
from ..runs import ModelSpec, RunPaths, iteration_dir

SERVER_LOG = "server.log"  # --serve-local: the server's own log, in the iteration folder


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
            # a server srlm-lite starts itself (--serve-local) logs beside the iteration's records
            options = replace(EngineOptions.from_config(self.config.model), server_log=str(self.dir / SERVER_LOG))
            self._engine = open_engine(self.model, options)
        return self._engine

    def release_engine(self) -> None:
        """Let the engine go (a server it started is stopped: training wants the memory)."""
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "close"):
            engine.close()

    def require(self, name: str, stage: str, fields: dict[str, type] | None = None) -> list[dict]:
        """The records of an earlier stage's finished file; a clear error when that stage has not run, or when a
        line is damaged or lacks one of `fields` (name -> type; RecordError naming the line)."""
        path = self.dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run the '{stage}' stage first")
        return read_jsonl(path, fields=fields)
