"""Stage 2, candidates: N sampled responses per prompt from the iteration's model M_t."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .config import ResponsesConfig
from .engines.base import Engine, complete_n
from .runs import StageFile, derive_seed

FILE = "responses.jsonl"


def run(
    engine: Engine,
    prompts: list[dict],
    out_dir: Path,
    config: ResponsesConfig,
    *,
    run_seed: int,
    iteration: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """One record per (prompt, sample): id `<prompt id>-r<k>`, seeded by (run seed, iteration, prompt, sample).

    The N candidates of a prompt are drawn together (`complete_n`: one llama.cpp batch on the real engine)."""
    stage = StageFile(out_dir / FILE)
    if stage.done:
        return summarize(stage.records(), seconds=0.0)
    started = time.perf_counter()
    done = stage.resume()
    order = []
    total = len(prompts) * config.samples
    for p_index, item in enumerate(prompts):
        ids = [f"{item['id']}-r{k}" for k in range(config.samples)]
        order += ids
        todo = [k for k, record_id in enumerate(ids) if record_id not in done]
        if not todo:
            continue
        seeds = [derive_seed(run_seed, iteration, "responses", p_index, k) for k in todo]
        outs = complete_n(engine, engine.chat_prompt(item["prompt"]), seeds=seeds, max_tokens=config.max_tokens,
                          temperature=config.temperature, top_p=config.top_p)
        for k, seed, out in zip(todo, seeds, outs):
            stage.append({
                "id": ids[k],
                "prompt_id": item["id"],
                "prompt": item["prompt"],
                "response": out.text.strip(),
                "n_tokens": out.n_tokens,
                "finish_reason": out.finish_reason,
                "seed": seed,
            })
        if progress:
            progress("responses", len(order), total)
    records = stage.complete(order)
    return summarize(records, seconds=time.perf_counter() - started)


def summarize(records: list[dict], seconds: float) -> dict:
    n = len(records)
    return {
        "responses": n,
        "truncated": sum(r["finish_reason"] == "length" for r in records),
        "mean_response_tokens": round(sum(r["n_tokens"] for r in records) / n, 1) if n else 0.0,
        "mean_response_chars": round(sum(len(r["response"]) for r in records) / n, 1) if n else 0.0,
        "seconds": round(seconds, 2),
    }
