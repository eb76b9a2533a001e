"""Durable records: atomic files, JSONL read and written, the append-only stage file that survives a kill."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temporary file in the same folder, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every complete record; a torn last line (a kill mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


class StageFile:
    """One stage's JSONL output. Records are appended to `<name>.partial` as they are made (fsynced), and
    the file is renamed to `<name>` when the stage completes, so its existence means the stage is done.
    A killed stage resumes from the partial file: torn lines are cut, records are keyed by `id`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")

    @property
    def done(self) -> bool:
        return self.path.exists()

    def records(self) -> list[dict]:
        return read_jsonl(self.path if self.done else self.partial)

    def resume(self) -> dict[str, dict]:
        """Records already written, by id; rewrites the partial file without a torn tail."""
        if self.done:
            return {r["id"]: r for r in read_jsonl(self.path)}
        records = read_jsonl(self.partial)
        unique = {}
        for record in records:
            unique.setdefault(record["id"], record)
        if self.partial.exists():
            write_jsonl_atomic(self.partial, unique.values())
        return unique

    def append(self, record: dict) -> None:
        if "id" not in record:
            raise ValueError("every stage record needs an 'id'")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        with open(self.partial, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def complete(self, order: list[str] | None = None) -> list[dict]:
        """Finish the stage: the partial records (in `order` of ids when given) become the final file."""
        records = self.resume()
        ordered = [records[i] for i in order if i in records] if order else list(records.values())
        write_jsonl_atomic(self.path, ordered)
        self.partial.unlink(missing_ok=True)
        return ordered

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
        self.partial.unlink(missing_ok=True)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Streamed SHA-256 of a file, cached by (path, mtime, size)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def recorded_stage(path: str | Path, produce: Callable[[StageFile, dict[str, dict]], list[str] | None],
                   summarize: Callable[..., dict]) -> dict:
    """Run one stage's output file through its life: a finished file is summarized as it is; otherwise the records
    already in the partial file are handed to `produce(stage, done)`, which appends the missing ones and returns
    the final order of ids (None: as appended); the file is then completed and summarized with the seconds spent."""
    stage = StageFile(path)
    if stage.done:
        return summarize(stage.records(), seconds=0.0)
    started = time.perf_counter()
    order = produce(stage, stage.resume())
    records = stage.complete(order)
    return summarize(records, seconds=time.perf_counter() - started)
