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
    if config.mode == "pairwise":
        _run_pairwise(engine, responses, stage, done, config, progress)
        records = stage.complete([r["id"] for r in responses])
        return summarize(records, seconds=time.perf_counter() - started)
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


def round_robin(engine: Engine, instruction: str, answers: list[str], min_mass: float) -> list[list[dict]]:
    """The pairwise judge on a prompt's candidates: every two compared in both orders (`compare_both_orders`).
    Per answer, one verdict per opponent: P(this answer is better), position-debiased, and its score 5 x P."""
    from .pairwise import compare_both_orders

    found: list[list[dict]] = [[] for _ in answers]
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            result = compare_both_orders(engine, instruction, answers[i], answers[j], min_mass)
            for me, other, p in ((i, j, result["p_x"]), (j, i, round(1 - result["p_x"], 4))):
                found[me].append({"opponent": other, "p_better": p, "score": round(SCORE_MAX * p, 4),
                                  "source": "pairwise", "consistent": result["consistent"]})
    return found


def _run_pairwise(engine: Engine, responses: list[dict], stage: StageFile, done: set, config: JudgeConfig,
                  progress) -> None:
    """Pairwise mode: a response's score is 5 x its mean P(better) against the other candidates of its prompt."""
    groups: dict[str, list[dict]] = {}
    for item in responses:
        groups.setdefault(item["prompt_id"], []).append(item)
    finished = 0
    for group in groups.values():
        finished += len(group)
        if all(item["id"] in done for item in group):
            continue
        found = round_robin(engine, group[0]["prompt"], [item["response"] for item in group], config.min_digit_mass)
        for item, own in zip(group, found):
            for verdict in own:
                verdict["opponent"] = group[verdict["opponent"]]["id"]
            if item["id"] not in done:
                stage.append({"id": item["id"], "prompt_id": item["prompt_id"], "judgments": own,
                              "score": mean_score([v["score"] for v in own])})
        if progress:
            progress("judge", finished, len(responses))


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
