"""The `verify` reward's data: which generated prompts carry verifiable constraints (constraints.jsonl, beside the
iteration's instructions), and how many of them each response meets."""

from __future__ import annotations

import random
from pathlib import Path

from ..records import read_jsonl, write_jsonl_atomic
from ..seeds import derive_seed
from . import needed_components
from .constraints import constrained_prompt, draw_constraints, met, parse_families

FILE = "constraints.jsonl"


def uses_verify(config) -> bool:
    """Whether the run's reward source measures constraints (verify, mix)."""
    return "verify" in needed_components(config.reward)


def attach(prompts: list[dict], config, run_seed: int, iteration: int) -> list[dict]:
    """Per prompt, seeded by (run seed, iteration, prompt id): with probability `verify_share`, 1 to
    `max_constraints` constraints of the allowed families appended to it. Records: id, prompt (as answered),
    base_prompt, constraints ([] when none)."""
    reward = config.reward
    families = parse_families(reward.verify_families)
    out = []
    for item in prompts:
        rng = random.Random(derive_seed(run_seed, iteration, "constraints", item["id"]))
        chosen = []
        if rng.random() < reward.verify_share:
            chosen = draw_constraints(rng, families, rng.randint(1, reward.max_constraints))
        text = constrained_prompt(item["prompt"], chosen) if chosen else item["prompt"]
        out.append({"id": item["id"], "prompt": text, "base_prompt": item["prompt"], "constraints": chosen})
    return out


def constrained(it_dir: Path, prompts: list[dict], config, run_seed: int, iteration: int) -> list[dict]:
    """The prompts as the responses stage answers them: constraints attached once (constraints.jsonl) and reread."""
    path = Path(it_dir) / FILE
    if not path.exists():
        write_jsonl_atomic(path, attach(prompts, config, run_seed, iteration))
    by_id = {r["id"]: r for r in read_jsonl(path)}
    return [{**item, "prompt": by_id[item["id"]]["prompt"]} if item["id"] in by_id else item for item in prompts]


def constraints_by_prompt(it_dir: Path) -> dict[str, dict]:
    """prompt id -> its constraints record (empty without constraints.jsonl)."""
    return {r["id"]: r for r in read_jsonl(Path(it_dir) / FILE)}


def met_share(record: dict | None, response: str) -> list[bool] | None:
    """Per constraint, whether the response meets it (None for a prompt without constraints)."""
    if not record or not record["constraints"]:
        return None
    return met(record["prompt"], record["constraints"], response)
