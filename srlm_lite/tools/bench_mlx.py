"""`srlm-lite bench`'s MLX engine figures: batched sampling against one sequence at a time, and the `expected`
judge batched with its rubric prefix cached against one plain forward pass per response. Measured on whatever
device MLX runs on (here: the CPU; on Apple Silicon: the GPU)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..config import JudgeConfig
from ..engines import EngineOptions, open_engine
from ..runs import ModelSpec
from ..seeds import derive_seed


def bench_mlx(model: Path, prompts: list[str], samples: int, max_tokens: int, judge_items: list[dict],
              say: Callable[[str], None], figure: Callable) -> list[dict]:
    """Three figures: mlx_sampling and mlx_vs_llama_cpp (generated tokens/s), mlx_judging (seconds per judged
    response)."""
    from ..mlx_runtime import mx

    engine = open_engine(ModelSpec(model), EngineOptions(backend="mlx"))
    say(f"mlx: {len(prompts)} prompts x {samples} candidates, batched then one at a time "
        f"(device {mx.default_device()})")
    seeds = [[derive_seed(0, "bench-mlx", p, k) for k in range(samples)] for p in range(len(prompts))]
    settings = dict(max_tokens=max_tokens, temperature=0.7, top_p=0.9)
    requests = [(engine.chat_prompt(p), s) for p, s in zip(prompts, seeds)]
    started = time.perf_counter()
    batched = engine.complete_many(requests, **settings)
    rate = sum(o.n_tokens for group in batched for o in group) / (time.perf_counter() - started)
    started, tokens = time.perf_counter(), 0
    for prompt, group in requests:
        for seed in group:
            tokens += engine.complete(prompt, seed=seed, **settings).n_tokens
    one_rate = tokens / (time.perf_counter() - started)
    rows = [figure("mlx_sampling", "generated tokens/s", rate, one_rate, higher_is_better=True,
                   device=str(mx.default_device()),
                   compares="MLX engine: the candidates of several prompts decoded together by mlx-lm's "
                            "BatchGenerator (prompts prefilled once, a seeded sampler per sequence) vs one "
                            "`complete` per candidate")]
    rows.append(_against_llama_cpp(model, requests, rate, settings, say, figure))
    rows.append(_judging(engine, judge_items, say, figure))
    return rows


def _against_llama_cpp(model: Path, requests: list, mlx_rate: float, settings: dict, say: Callable[[str], None],
                       figure: Callable) -> dict:
    """The same candidates sampled by the llama.cpp engine (batched, its defaults) against the MLX engine's rate."""
    engine = open_engine(ModelSpec(model), EngineOptions(backend="llama-cpp"))
    say("mlx: the same candidates with the llama.cpp engine")
    started = time.perf_counter()
    done = engine.complete_many(requests, **settings)
    rate = sum(o.n_tokens for group in done for o in group) / (time.perf_counter() - started)
    return figure("mlx_vs_llama_cpp", "generated tokens/s", mlx_rate, rate, higher_is_better=True,
                  compares="the MLX engine's batched sampling vs the llama.cpp engine's batched sampling of the same "
                           "prompts and seeds, on this machine's device")


def _judging(engine, items: list[dict], say: Callable[[str], None], figure: Callable) -> dict:
    """Seconds per response of the expected judge: batched, rubric prefix cached vs a full forward pass each."""
    from ..judging.rubric import FORCED_PREFIX, SCORE_TOKENS, expected_verdicts_many, judge_prompt
    from ..mlx_runtime import mx

    say(f"mlx: the expected judge on {len(items)} responses, batched then plain")
    config = JudgeConfig(mode="expected")
    pairs = [(item["instruction"], item["response"]) for item in items]
    started = time.perf_counter()
    for start in range(0, len(pairs), 8):
        expected_verdicts_many(engine, pairs[start:start + 8], config)
    ours = (time.perf_counter() - started) / len(pairs)
    ids = [engine._single_token(t) for t in SCORE_TOKENS]
    started = time.perf_counter()
    for instruction, response in pairs:
        tokens = engine.encode(judge_prompt(engine, instruction, response) + FORCED_PREFIX.lstrip("\n"))
        logits = engine.model(mx.array([tokens]))[0, -1]
        mx.eval(logits[mx.array(ids)])
    plain = (time.perf_counter() - started) / len(pairs)
    return figure("mlx_judging", "seconds per judged response", ours, plain, higher_is_better=False,
                  compares="MLX engine, expected judge: 8 responses per batched forward pass, the rubric's KV cache "
                           "computed once vs one full forward pass of each judge prompt")
