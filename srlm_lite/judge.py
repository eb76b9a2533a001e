"""Stage 3, LLM-as-a-Judge: M_t grades each candidate with the additive 5-point rubric, J times, averaged."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from .config import JudgeConfig
from .engines.base import Engine, complete_n
from .runs import StageFile, derive_seed
from .scores import SCORE_MAX, SCORE_MIN, expected_score, mean_score, parse_score
from .templates import load_template

FILE = "judgments.jsonl"
FORCED_PREFIX = "\nScore: "
SCORE_TOKENS = [str(d) for d in range(SCORE_MIN, SCORE_MAX + 1)]


def judge_prompt(engine: Engine, instruction: str, response: str) -> str:
    """The rubric comes first in the template, so its KV cache is shared by every judged response."""
    return engine.chat_prompt(load_template("judge").render(instruction=instruction, response=response))


def verdicts(engine: Engine, prompt: str, config: JudgeConfig, seeds: list[int]) -> list[dict]:
    """One verdict per seed, the texts sampled together (`complete_n`). The score is parsed from the judge's own
    text only; in forced mode, when it wrote none, `Score: ` is appended and the score is the expected value of
    its distribution over the digits 0-5."""
    if config.mode == "expected":
        return [expected_verdict(engine, prompt, config.min_digit_mass)]
    outs = complete_n(engine, prompt, seeds=seeds, max_tokens=config.max_tokens, temperature=config.temperature,
                      top_p=config.top_p)
    return [_verdict(engine, prompt, config, seed, out) for seed, out in zip(seeds, outs)]


def expected_verdict(engine: Engine, prompt: str, min_mass: float) -> dict:
    """The "expected" judge: no justification; the answer is forced to start with `Score: ` and the score is the
    expected value over the digits 0-5. One forward pass (the rubric's KV cache reused), deterministic."""
    logprobs = engine.next_token_logprobs(prompt + FORCED_PREFIX.lstrip("\n"), SCORE_TOKENS)
    digit_logprobs = {int(token): lp for token, lp in logprobs.items()}
    score = expected_score(digit_logprobs, min_mass)
    return {"text": "", "seed": None, "score": None if score is None else round(score, 4),
            "source": "expected" if score is not None else "none",
            "digit_mass": round(sum(math.exp(lp) for lp in digit_logprobs.values()), 4)}


def _verdict(engine: Engine, prompt: str, config: JudgeConfig, seed: int, out) -> dict:
    score = parse_score(out.text)
    verdict = {"text": out.text, "seed": seed, "score": score, "source": "parsed" if score is not None else "none"}
    if score is None and config.mode == "forced":
        logprobs = engine.next_token_logprobs(prompt + out.text.rstrip() + FORCED_PREFIX, SCORE_TOKENS)
        digit_logprobs = {int(token): lp for token, lp in logprobs.items()}
        score = expected_score(digit_logprobs, config.min_digit_mass)
        verdict.update(
            score=None if score is None else round(score, 4),
            source="expected" if score is not None else "none",
            digit_mass=round(sum(math.exp(lp) for lp in digit_logprobs.values()), 4),
        )
    return verdict


def run(
    engine: Engine,
    responses: list[dict],
    out_dir: Path,
    config: JudgeConfig,
    *,
    run_seed: int,
    iteration: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """One record per response (same id): its J verdicts and their mean score (None when none parsed)."""
    stage = StageFile(out_dir / FILE)
    if stage.done:
        return summarize(stage.records(), seconds=0.0)
    started = time.perf_counter()
    done = stage.resume()
    for index, item in enumerate(responses):
        if item["id"] in done:
            continue
        prompt = judge_prompt(engine, item["prompt"], item["response"])
        seeds = [derive_seed(run_seed, iteration, "judge", item["id"], j) for j in range(config.judge_samples)]
        found = verdicts(engine, prompt, config, seeds)
        stage.append({
            "id": item["id"],
            "prompt_id": item["prompt_id"],
            "judgments": found,
            "score": mean_score([v["score"] for v in found]),
        })
        if progress:
            progress("judge", index + 1, len(responses))
    records = stage.complete([r["id"] for r in responses])
    return summarize(records, seconds=time.perf_counter() - started)


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
