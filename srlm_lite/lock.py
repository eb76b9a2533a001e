"""One run, one writer: an exclusive lock file in the run directory while a process works on it.

The lock is an `flock` on `<run>/run.lock`, which also names its holder (process id, host, command, start time).
The kernel drops an flock when its process dies, however it dies, so a lock left by a killed process is never in
the way: the next run takes it over and says whose it was. A second process on a live run is refused with
`RunLockedError`, naming the holder. The lock is re-entrant within one process (`iterate` holds it while each
stage takes it again), and the file is removed when the last holder lets go.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import RunLockedError
from .records import ensure_dir

LOCK_FILE = "run.lock"
_HELD: dict[str, list] = {}  # resolved lock path -> [fd, depth]


def holder(run_dir: str | Path) -> dict | None:
    """What the lock file of a run says about its holder (None when there is none or it cannot be read)."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pid_alive(pid) -> bool:
    """True when a process with this id exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(info: dict | None) -> str:
    if not info:
        return "another process"
    command = " ".join(info.get("command", [])[:3])
    return f"process {info.get('pid')} on {info.get('host')} ({command}, since {info.get('started')})"


def _try_lock(path: Path) -> int | None:
    """An fd holding the flock on `path`, or None when another process holds it. Retries when the file was
    replaced under us (its holder removed it between our open and our lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _write_holder(fd: int) -> None:
    """Who holds the lock, for the message a second process shows (best effort: the flock is the lock)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    program = "srlm-lite" if program in ("__main__.py", "srlm-lite") else program
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": [program, *sys.argv[1:]],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
    except OSError:  # a full disk: the lock holds all the same, only its description is missing
        pass


@contextlib.contextmanager
def run_lock(run_dir: str | Path, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the run directory's lock for the block; RunLockedError when a live process holds it already."""
    run_dir = ensure_dir(run_dir)
    path = (run_dir / LOCK_FILE).resolve()
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    previous = holder(run_dir)
    fd = _try_lock(path)
    if fd is None:
        raise RunLockedError(f"{run_dir} is in use by {describe(holder(run_dir) or previous)}: one run directory "
                             f"takes one writer; wait for it to finish or stop it, then run again")
    if previous and previous.get("pid") != os.getpid() and say:
        state = "still running, but not holding the lock" if pid_alive(previous.get("pid")) else "no longer running"
        say(f"took over the lock of {run_dir} left by {describe(previous)}: {state}")
    _write_holder(fd)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
