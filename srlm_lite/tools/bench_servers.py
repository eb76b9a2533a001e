"""`srlm-lite bench`'s server figures: the same candidates sampled through each OpenAI-compatible server srlm-lite can
start itself (`python -m llama_cpp.server`, `mlx_lm.server`) at concurrency 1, 2 and 4, against the in-process
engine of the same library (llama.cpp, MLX) on the same work. Ratio > 1: the server path is faster."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..engines import ENGINES, EngineOptions, complete_many, open_engine
from ..runs import ModelSpec
from ..seeds import derive_seed

CONCURRENCY = (1, 2, 4)
# server -> the in-process backend of the same library, the baseline
SERVERS = {"llama-cpp-python": "llama-cpp", "mlx-lm": "mlx"}


def sampling_rate(engine, prompts: list[str], samples: int, max_tokens: int) -> tuple[float, int]:
    """(generated tokens/s, tokens) of N seeded candidates per prompt at T=0.7, top-p 0.9 (`complete_many`)."""
    requests = [(engine.chat_prompt(p), [derive_seed(0, "bench-servers", i, k) for k in range(samples)])
                for i, p in enumerate(prompts)]
    started = time.perf_counter()
    outs = complete_many(engine, requests, max_tokens=max_tokens, temperature=0.7, top_p=0.9)
    tokens = sum(o.n_tokens for group in outs for o in group)
    return tokens / (time.perf_counter() - started), tokens


def bench_servers(model: Path, prompts: list[str], samples: int, max_tokens: int, say: Callable[[str], None],
                  figure: Callable) -> list[dict]:
    """One figure per (server, concurrency): tokens/s through the server vs the in-process engine."""
    rows = []
    for server, inproc in SERVERS.items():
        name = f"server_{server}"
        if inproc not in ENGINES:
            continue
        try:
            say(f"servers: {len(prompts)} prompts x {samples} candidates in-process ({inproc})")
            base = open_engine(ModelSpec(model), EngineOptions(backend=inproc))
            baseline, _ = sampling_rate(base, prompts, samples, max_tokens)
            del base
            engine = open_engine(ModelSpec(model), EngineOptions(backend="openai", server=server, serve_local=True))
        except (ImportError, RuntimeError, ValueError) as unavailable:
            rows.append(figure(name, "generated tokens/s", None, None, higher_is_better=True,
                               skipped=f"{type(unavailable).__name__}: {str(unavailable)[:300]}"))
            continue
        try:
            for concurrency in CONCURRENCY:
                engine.concurrency = concurrency
                say(f"servers: the same through {server} (--serve-local), concurrency {concurrency}")
                rate, tokens = sampling_rate(engine, prompts, samples, max_tokens)
                rows.append(figure(f"{name}_c{concurrency}", "generated tokens/s", rate, baseline,
                                   higher_is_better=True, tokens=tokens, concurrency=concurrency,
                                   compares=f"N={samples} seeded candidates of {len(prompts)} prompts, up to "
                                            f"{max_tokens} tokens, through {server} on 127.0.0.1 ({concurrency} "
                                            f"requests in flight) vs the in-process {inproc} engine as iterate "
                                            "runs it"))
        finally:
            engine.close()
    return rows
