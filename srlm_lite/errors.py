"""The errors a user can cause or meet, each with a message that says what is wrong and what to do.

The CLI shows any of them as one line on stderr, without a traceback: `InputError` (and its subclasses, such as
`config.ConfigError`) exits 2, like a usage error; the others exit 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class InputError(ValueError):
    """A user's input is wrong: a file, an option, a model, a record; the message names it (and its line)."""


class RecordError(InputError):
    """A JSONL file holds a line that is not a JSON object (or not UTF-8 text); the message names the line."""


class DiskFullError(OSError):
    """No space left on the device while writing a run's output; nothing finished is lost, `--resume` continues."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no space left on the device"


class RunLockedError(RuntimeError):
    """Another live process is working on the same run directory."""


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite; training stopped and the last good weights were kept."""


class ServerError(RuntimeError):
    """An inference server (`--backend openai`) refused a request, or stayed unreachable through every retry."""


class AdapterNotServed(RuntimeError):
    """The server does not serve M_t's adapter and srlm-lite cannot load it there: the message says which file to
    load and how."""


FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means the device (or the user's quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in FULL_DISK_ERRNOS


def disk_full(path, exc: BaseException) -> DiskFullError:
    """The DiskFullError to raise when writing `path` failed with `exc` (ENOSPC and its kin)."""
    error = DiskFullError(f"no space left on the device while writing {path}: free some space, then continue "
                          f"with --resume (finished records are kept)")
    # still reads as ENOSPC to callers that check errno
    error.errno, error.filename = getattr(exc, "errno", None) or errno.ENOSPC, str(path)
    return error
