"""Stage 3, LLM-as-a-Judge: M_t grades each candidate in the run's judging format (see `judging`), J verdicts
averaged where the format samples."""

from __future__ import annotations

from pathlib import Path

from ..config import JudgeConfig
from ..engines.base import Engine
from ..hooks import Progress
from ..judging import judge_format
from ..judging.scores import mean_score
from ..records import StageFile, recorded_stage
from ..seeds import derive_seed
from . import responses as responses_stage

FILE = "judgments.jsonl"


def run(ctx) -> dict:
    """Stage 3 of iteration t: M_t judges every candidate of stage 2."""
    candidates = ctx.require(responses_stage.FILE, "responses")
    return judge_responses(ctx.engine, candidates, ctx.dir, ctx.config.judge, run_seed=ctx.config.seed,
                           iteration=ctx.t, progress=ctx.hooks.progress)


def judge_responses(
    engine: Engine,
    responses: list[dict],
    out_dir: Path,
    config: JudgeConfig,
    *,
    run_seed: int,
    iteration: int,
    progress: Progress | None = None,
) -> dict:
    """One record per response (same id): its verdicts and their mean score (None when none could be scored)."""
    fmt = judge_format(config.mode)

    def produce(stage: StageFile, done: dict) -> list[str]:
        if fmt.pointwise:
            _judge_each(engine, responses, stage, done, config, run_seed, iteration, progress)
        else:
            _judge_groups(engine, responses, stage, done, config, progress)
        return [r["id"] for r in responses]

    return recorded_stage(out_dir / FILE, produce, summarize)


def _judge_each(engine, responses, stage, done, config, run_seed, iteration, progress) -> None:
    """A pointwise format: each response judged alone, appended as soon as it is."""
    fmt = judge_format(config.mode)
    for index, item in enumerate(responses):
        if item["id"] in done:
            continue
        seeds = [derive_seed(run_seed, iteration, "judge", item["id"], j) for j in range(config.judge_samples)]
        found = fmt.score(engine, item["prompt"], item["response"], config, seeds)
        stage.append(_record(item, found))
        if progress:
            progress("judge", index + 1, len(responses))


def _judge_groups(engine, responses, stage, done, config, progress) -> None:
    """A format that judges a prompt's candidates together (pairwise): one group at a time; opponents by id."""
    fmt = judge_format(config.mode)
    groups: dict[str, list[dict]] = {}
    for item in responses:
        groups.setdefault(item["prompt_id"], []).append(item)
    finished = 0
    for group in groups.values():
        finished += len(group)
        if all(item["id"] in done for item in group):
            continue
        found = fmt.score_group(engine, group[0]["prompt"], [item["response"] for item in group], config)
        for item, own in zip(group, found):
            for verdict in own:
                if "opponent" in verdict:
                    verdict["opponent"] = group[verdict["opponent"]]["id"]
            if item["id"] not in done:
                stage.append(_record(item, own))
        if progress:
            progress("judge", finished, len(responses))


def _record(item: dict, verdicts: list[dict]) -> dict:
    return {"id": item["id"], "prompt_id": item["prompt_id"], "judgments": verdicts,
            "score": mean_score([v["score"] for v in verdicts])}


def summarize(records: list[dict], seconds: float) -> dict:
    verdicts = [v for r in records for v in r["judgments"]]
    n = len(verdicts)
    parsed = sum(v["source"] == "parsed" for v in verdicts)
    scored = sum(v["score"] is not None for v in verdicts)
    scores = [r["score"] for r in records if r["score"] is not None]
    return {
        "judged": len(records),
        "judgments": n,
        "parsed": parsed,
        "expected": sum(v["source"] == "expected" for v in verdicts),
        "unscored": n - scored,
        "parse_rate": round(parsed / n, 4) if n else 0.0,
        "score_rate": round(scored / n, 4) if n else 0.0,
        "responses_scored": len(scores),
        "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
        "seconds": round(seconds, 2),
    }
