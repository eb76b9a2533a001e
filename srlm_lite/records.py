"""Durable records: atomic files, JSONL read and written, the append-only stage file that survives a kill.

Durable means: a file is written to a temporary name, fsynced, renamed over its target, and the directory is
fsynced after the rename, so after a crash or a power cut a reader finds the old file or the new one, never half
of it. A full disk is reported as `DiskFullError` (nothing half-written is left behind); a line that is not a
JSON object is reported as `RecordError` with its file and line number.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import DiskFullError, RecordError, disk_full, is_disk_full


# ---------------------------------------------------------------------------------------------- durable files

def fsync_dir(path: str | Path) -> None:
    """Make a directory's entries (a rename, a new file) durable; a no-op where the OS cannot open directories."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the rename is then as durable as they allow
        pass
    finally:
        os.close(fd)


def ensure_dir(path: str | Path) -> Path:
    """Create a directory and its missing parents, each new entry made durable in its parent."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(exist_ok=True)
        except OSError as exc:
            _raise_full(directory, exc)
            raise
        fsync_dir(directory.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error the file written there is fsynced,
    renamed over `path` and the rename made durable. On any error the temporary file is removed; a full disk is
    raised as DiskFullError. `suffix` matters to writers that insist on one (safetensors)."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
    except OSError as exc:
        _raise_full(path, exc)
        raise
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        full = _means_full(path, exc)  # judged before the temporary file gives its space back
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise disk_full(path, exc) from exc
        raise
    fsync_dir(path.parent)


NEARLY_FULL = 1 << 20  # bytes: a writer that fails with less than this left on the device ran out of space


def _means_full(path: str | Path, exc: BaseException) -> bool:
    """True when `exc` says the disk is full: ENOSPC and its kin, or a writer's own error (MLX's RuntimeError,
    numpy's short write) while the device has almost nothing left."""
    if isinstance(exc, DiskFullError) or not isinstance(exc, (OSError, RuntimeError)):
        return False
    if is_disk_full(exc):
        return True
    try:
        stat = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < NEARLY_FULL


def _raise_full(path: str | Path, exc: BaseException) -> None:
    """Raise DiskFullError (naming `path`) when `exc` means the disk is full; otherwise return."""
    if is_disk_full(exc) and not isinstance(exc, DiskFullError):
        raise disk_full(path, exc) from exc


def _fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write via a temporary file in the same folder, fsync, rename, fsync the folder: readers see old or new."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    return Path(path)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a nearly full disk writes short before it refuses)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def append_bytes_durably(path: str | Path, data: bytes) -> None:
    """Append `data` to a file and fsync it; on failure the file is cut back to its old length, so a full disk
    never leaves a torn line behind (raised as DiskFullError)."""
    path = Path(path)
    new = not path.exists()
    if new:
        ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        _raise_full(path, exc)
        raise
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            _raise_full(path, exc)
            raise
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------- reading

def read_json(path: str | Path) -> Any:
    """A JSON file; one that is not UTF-8 or not JSON raises RecordError naming the file."""
    data = Path(path).read_bytes()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc


def parse_record(raw: bytes, where: str, fields: dict[str, type] | None = None) -> dict:
    """One JSONL line (bytes, without its newline) as a dict; RecordError naming `where` (file:line) otherwise.
    `fields` maps field names that must be present to their type."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                          f"save the file as UTF-8") from exc
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise RecordError(f"{where}: JSON nested too deeply") from exc
    if not isinstance(record, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name, kind in (fields or {}).items():
        if name not in record:
            raise RecordError(f"{where}: missing field '{name}'")
        if not isinstance(record[name], kind) or (kind is int and isinstance(record[name], bool)):
            raise RecordError(f"{where}: field '{name}' must be {kind.__name__}, got {type(record[name]).__name__}")
    return record


def iter_jsonl(path: str | Path, *, fields: dict[str, type] | None = None, skip_bad: bool = False,
               torn_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every record of a JSONL file; blank lines are skipped.

    With `torn_tail` (our own files), a last line without its newline that does not parse is a write torn by a
    kill and is ignored. Any other bad line raises RecordError naming the file and line, unless `skip_bad` (a
    partial stage file: its missing records are simply made again)."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # what follows the last newline: nothing, or a torn write
    numbered = [(n, raw, False) for n, raw in enumerate(lines, 1)] + [(len(lines) + 1, tail, torn_tail)]
    for number, raw, torn in numbered:
        if not raw.strip():
            continue
        try:
            yield number, parse_record(raw, f"{path}:{number}", fields)
        except RecordError:
            if not (skip_bad or torn):
                raise


def group_by(records, key: str = "prompt_id") -> dict[str, list[dict]]:
    """Records grouped by one field (a prompt's candidates), groups and records in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record[key], []).append(record)
    return groups


def read_jsonl(path: str | Path, *, fields: dict[str, type] | None = None, skip_bad: bool = False) -> list[dict]:
    """Every record of a JSONL file ([] when it does not exist); see `iter_jsonl` for torn and bad lines."""
    path = Path(path)
    if not path.exists():
        return []
    return [record for _, record in iter_jsonl(path, fields=fields, skip_bad=skip_bad)]


# ---------------------------------------------------------------------------------------------- stage files

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
        if self.done:
            return read_jsonl(self.path)
        return read_jsonl(self.partial, skip_bad=True)

    def resume(self) -> dict[str, dict]:
        """Records already written, by id; rewrites the partial file without a torn tail (or a damaged line:
        the records it held are made again)."""
        if self.done:
            return {r["id"]: r for r in read_jsonl(self.path)}
        records = read_jsonl(self.partial, fields={"id": str}, skip_bad=True)
        unique = {}
        for record in records:
            unique.setdefault(record["id"], record)
        if self.partial.exists():
            write_jsonl_atomic(self.partial, unique.values())
        return unique

    def append(self, record: dict) -> None:
        if "id" not in record:
            raise ValueError("every stage record needs an 'id'")
        append_bytes_durably(self.partial, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

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


# `atomic_path`'s temporary files: .<name>.<8 random characters><suffix>; a kill mid-write leaves one behind
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)$")


def remove_temporaries(root: str | Path) -> int:
    """Delete the temporary files killed writers left under `root` (call it holding the run's lock: no writer is
    at work then); returns how many. Only names `atomic_path` makes are touched."""
    removed = 0
    for path in Path(root).rglob(".*"):
        found = _TEMPORARY.match(path.name)
        if found and path.is_file() and (found["suffix"] == ".tmp" or found["name"].endswith(found["suffix"])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def link_or_copy(source: str | Path, target: str | Path) -> Path:
    """`target` becomes the same file as `source` (a hard link; a copy where links are impossible), in one rename."""
    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


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
