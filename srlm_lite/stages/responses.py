"""Stage 2, candidates: N sampled responses per prompt from the iteration's model M_t."""

from __future__ import annotations

from pathlib import Path

from ..config import ResponsesConfig
from ..engines.base import SEQUENCES_PER_BATCH, Engine, complete_many
from ..hooks import Progress
from ..records import StageFile, recorded_stage
from ..rewards.verify import constrained, uses_verify
from ..seeds import derive_seed
from . import instructions
from .fit import TOO_LONG, fits

FILE = "responses.jsonl"
FIELDS = {"id": str, "prompt_id": str, "prompt": str, "response": str, "finish_reason": str}


def run(ctx) -> dict:
    """Stage 2 of iteration t: N candidates from M_t for every prompt kept by stage 1."""
    prompts = instructions.kept_prompts(ctx.require(instructions.FILE, "instructions", instructions.FIELDS))
    if uses_verify(ctx.config):  # verifiable constraints appended to a share of the prompts (constraints.jsonl)
        prompts = constrained(ctx.dir, prompts, ctx.config, ctx.config.seed, ctx.t)
    return sample_candidates(ctx.engine, prompts, ctx.dir, ctx.config.responses, run_seed=ctx.config.seed,
                             iteration=ctx.t, progress=ctx.hooks.progress)


def sample_candidates(
    engine: Engine,
    prompts: list[dict],
    out_dir: Path,
    config: ResponsesConfig,
    *,
    run_seed: int,
    iteration: int,
    progress: Progress | None = None,
) -> dict:
    """One record per (prompt, sample): id `<prompt id>-r<k>`, seeded by (run seed, iteration, prompt, sample).

    The candidates of several prompts are drawn together (`complete_many`: one llama.cpp batch of up to
    SEQUENCES_PER_BATCH sequences on the real engine) and appended together, so a resumed run redoes at most one
    such group of prompts."""
    order = [f"{item['id']}-r{k}" for item in prompts for k in range(config.samples)]
    too_long = {item["id"] for item in prompts  # skipped: no room in the context for even one token per sample
                if not fits(engine, engine.chat_prompt(item["prompt"]), config.samples)}

    def produce(stage: StageFile, done: dict) -> list[str]:
        todo = [(p_index, item, [k for k in range(config.samples) if f"{item['id']}-r{k}" not in done])
                for p_index, item in enumerate(prompts) if item["id"] not in too_long]
        todo = [entry for entry in todo if entry[2]]
        per_batch = max(1, SEQUENCES_PER_BATCH // config.samples)
        for start in range(0, len(todo), per_batch):
            group = todo[start:start + per_batch]
            seeds = [[derive_seed(run_seed, iteration, "responses", p_index, k) for k in ks]
                     for p_index, _, ks in group]
            requests = [(engine.chat_prompt(item["prompt"]), s) for (_, item, _), s in zip(group, seeds)]
            outs = complete_many(engine, requests, max_tokens=config.max_tokens, temperature=config.temperature,
                                 top_p=config.top_p)
            for (_, item, ks), group_seeds, completions in zip(group, seeds, outs):
                for k, seed, out in zip(ks, group_seeds, completions):
                    stage.append(_record(item, k, seed, out))
            if progress:
                left = sum(len(ks) for _, _, ks in todo[start + per_batch:])
                progress("responses", len(order) - left, len(order))
        return order

    return {**recorded_stage(out_dir / FILE, produce, summarize), TOO_LONG: len(too_long)}


def _record(item: dict, k: int, seed: int, out) -> dict:
    return {"id": f"{item['id']}-r{k}", "prompt_id": item["id"], "prompt": item["prompt"],
            "response": out.text.strip(), "n_tokens": out.n_tokens, "finish_reason": out.finish_reason, "seed": seed}


def summarize(records: list[dict], seconds: float) -> dict:
    n = len(records)
    return {
        "responses": n,
        "truncated": sum(r["finish_reason"] == "length" for r in records),
        "mean_response_tokens": round(sum(r["n_tokens"] for r in records) / n, 1) if n else 0.0,
        "mean_response_chars": round(sum(len(r["response"]) for r in records) / n, 1) if n else 0.0,
        "seconds": round(seconds, 2),
    }
