"""Stage 3, LLM-as-a-Judge: M_t grades each candidate in the run's judging format (see `judging`), J verdicts
averaged where the format samples."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import JudgeConfig
from ..engines.base import Engine, engine_map
from ..hooks import Progress
from ..judging import judge_format, with_logprobs_fallback
from ..judging.pairwise import pairwise_prompt
from ..judging.rubric import judge_prompt
from ..judging.scores import mean_score
from ..records import StageFile, group_by, recorded_stage
from ..seeds import derive_seed
from . import responses as responses_stage
from .fit import TOO_LONG, fits

FILE = "judgments.jsonl"
FIELDS = {"id": str, "judgments": list}
JUDGE_BATCH = 8  # responses judged in one batched pass by an engine that has one (MLX)


def run(ctx) -> dict:
    """Stage 3 of iteration t: M_t judges every candidate of stage 2."""
    candidates = ctx.require(responses_stage.FILE, "responses", responses_stage.FIELDS)
    return judge_responses(ctx.engine, candidates, ctx.dir, ctx.config.judge, run_seed=ctx.config.seed,
                           iteration=ctx.t, progress=ctx.hooks.progress, say=ctx.hooks.say)


def judge_responses(
    engine: Engine,
    responses: list[dict],
    out_dir: Path,
    config: JudgeConfig,
    *,
    run_seed: int,
    iteration: int,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """One record per response (same id): its verdicts and their mean score (None when none could be scored).
    Where the engine gives no log-probs, a format that reads them gives way to the sampled judge (`say` tells)."""

    def judge_all(judge_config: JudgeConfig, stage: StageFile) -> None:
        done = stage.resume()
        if judge_format(judge_config.mode).pointwise:
            _judge_each(engine, responses, stage, done, judge_config, run_seed, iteration, progress)
        else:
            _judge_groups(engine, responses, stage, done, judge_config, progress)

    def produce(stage: StageFile, done: dict) -> list[str]:
        with_logprobs_fallback(lambda judge_config: judge_all(judge_config, stage), config, say)
        return [r["id"] for r in responses]

    return recorded_stage(out_dir / FILE, produce, summarize)


def _judge_each(engine, responses, stage, done, config, run_seed, iteration, progress) -> None:
    """A pointwise format: each response judged alone, appended as soon as it is (a server engine judges
    `concurrency` responses at a time, appended in order)."""
    fmt = judge_format(config.mode)
    todo = [(index, item) for index, item in enumerate(responses) if item["id"] not in done]

    def judge(entry):
        item = entry[1]
        if not fits(engine, judge_prompt(engine, item["prompt"], item["response"]), config.max_tokens + 8):
            return [_too_long()]  # unscored, so never a pair's chosen or rejected answer
        seeds = [derive_seed(run_seed, iteration, "judge", item["id"], j) for j in range(config.judge_samples)]
        return fmt.score(engine, item["prompt"], item["response"], config, seeds)

    batched = fmt.score_batch is not None and hasattr(engine, "next_token_logprobs_many")
    width = JUDGE_BATCH if batched else max(1, getattr(engine, "concurrency", 1))
    for start in range(0, len(todo), width):
        chunk = todo[start:start + width]
        found_all = _judge_batch(engine, fmt, chunk, config) if batched else engine_map(engine, judge, chunk)
        for (index, item), found in zip(chunk, found_all):
            stage.append(_record(item, found))
            if progress:
                progress("judge", index + 1, len(responses))


def _judge_batch(engine, fmt, chunk: list[tuple[int, dict]], config) -> list[list[dict]]:
    """A batch-capable engine and format (MLX, `expected`): the chunk's judge prompts in one batched pass; a prompt
    too long for the context is unscored, as in the one-by-one path."""
    fitting = [fits(engine, judge_prompt(engine, item["prompt"], item["response"]), config.max_tokens + 8)
               for _, item in chunk]
    scored = iter(fmt.score_batch(engine, [(item["prompt"], item["response"])
                                           for (_, item), ok in zip(chunk, fitting) if ok], config) if any(fitting)
                  else [])
    return [next(scored) if ok else [_too_long()] for ok in fitting]


def _judge_groups(engine, responses, stage, done, config, progress) -> None:
    """A format that judges a prompt's candidates together (pairwise): one group at a time; opponents by id."""
    fmt = judge_format(config.mode)
    finished = 0
    for group in group_by(responses).values():
        finished += len(group)
        if all(item["id"] in done for item in group):
            continue
        longest = sorted((item["response"] for item in group), key=len)[-2:]
        if not fits(engine, pairwise_prompt(engine, group[0]["prompt"], *longest), 8):
            found = [[_too_long()] for _ in group]
        else:
            found = fmt.score_group(engine, group[0]["prompt"], [item["response"] for item in group], config)
        for item, own in zip(group, found):
            for verdict in own:
                if "opponent" in verdict:
                    verdict["opponent"] = group[verdict["opponent"]]["id"]
            if item["id"] not in done:
                stage.append(_record(item, own))
        if progress:
            progress("judge", finished, len(responses))


def _too_long() -> dict:
    """The verdict of a response whose judge prompt does not fit the model's context: no score."""
    return {"score": None, "source": "none", "reason": TOO_LONG}


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
        TOO_LONG: sum(any(v.get("reason") == TOO_LONG for v in r["judgments"]) for r in records),
        "seconds": round(seconds, 2),
    }
