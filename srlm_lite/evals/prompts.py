"""Prompt files for the evals: JSONL with `prompt`, `instruction` or MT-Bench's `turns` (the first turn is used)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..records import iter_jsonl

PROMPT_FIELDS = ("prompt", "instruction", "turns")
ID_FIELDS = ("id", "key", "question_id")


def prompt_text(record: dict) -> str | None:
    """The user prompt of one record: `prompt`, else `instruction`, else the first of `turns`; None if none."""
    for name in ("prompt", "instruction"):
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    turns = record.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[0], str) and turns[0].strip():
        return turns[0]
    return None


def read_jsonl_records(path: str | Path, limit: int | None = None) -> list[dict]:
    """The JSON objects of a JSONL file (blank lines skipped), the first `limit` when given, each with its line
    number as `_line`. A line that is not a JSON object, or not UTF-8 text, raises RecordError naming its line."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    records = []
    try:
        for number, record in iter_jsonl(path, torn_tail=False):
            records.append({**record, "_line": number})
            if limit is not None and len(records) >= limit:
                break
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not records:
        raise InputError(f"{path}: no records")
    return records


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict]:
    """[{"id", "prompt", "record"}] from a prompt file; `id` is the record's id/key/question_id or its line number."""
    prompts = []
    for record in read_jsonl_records(path, limit):
        number = record.pop("_line")
        text = prompt_text(record)
        if text is None:
            raise InputError(f"{path}:{number}: no prompt; a line needs one of {', '.join(PROMPT_FIELDS)}")
        ident = next((record[k] for k in ID_FIELDS if record.get(k) is not None), number)
        prompts.append({"id": str(ident), "prompt": text, "record": record})
    return prompts
