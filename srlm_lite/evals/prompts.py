"""Prompt files for the evals: JSONL with `prompt`, `instruction` or MT-Bench's `turns` (the first turn is used)."""

from __future__ import annotations

import json
from pathlib import Path

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
    """The JSON objects of a JSONL file (blank lines skipped), the first `limit` when given; errors name the line."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append({**record, "_line": number})
            if limit is not None and len(records) >= limit:
                break
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict]:
    """[{"id", "prompt", "record"}] from a prompt file; `id` is the record's id/key/question_id or its line number."""
    prompts = []
    for record in read_jsonl_records(path, limit):
        number = record.pop("_line")
        text = prompt_text(record)
        if text is None:
            raise ValueError(f"{path}:{number}: no prompt; a line needs one of {', '.join(PROMPT_FIELDS)}")
        ident = next((record[k] for k in ID_FIELDS if record.get(k) is not None), number)
        prompts.append({"id": str(ident), "prompt": text, "record": record})
    return prompts
