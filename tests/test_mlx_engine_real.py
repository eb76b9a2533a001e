"""The MLX engine on the embedded model, against llama.cpp: the same greedy continuations, log-prob parity, the
same `expected` judge scores, seeded candidates reproducible however they are batched, and `iterate --backend mlx`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from srlm_lite.engines import EngineOptions, open_engine
from srlm_lite.judging.rubric import expected_verdict, expected_verdicts_many, judge_prompt
from srlm_lite.runs import ModelSpec
from srlm_lite.tools.doctor import PARITY_LIMIT

pytestmark = pytest.mark.real

PROMPTS = ["What is the capital of France?", "Give me two tips for sleeping better.", "Write a haiku about the sea."]
ANSWERS = ["Paris is the capital of France.", "I don't know.",
           "The capital of France is Paris, a city on the Seine known for the Eiffel Tower."]


@pytest.fixture(scope="module")
def engines(real_model_path):
    spec = ModelSpec(real_model_path)
    return open_engine(spec, EngineOptions(backend="mlx")), open_engine(spec, EngineOptions(batched=False))


def test_greedy_continuations_are_the_same_on_both_engines(engines):
    mlx, llama = engines
    for prompt in PROMPTS:
        a = mlx.complete(mlx.chat_prompt(prompt), max_tokens=32, temperature=0, top_p=1, seed=0)
        b = llama.complete(llama.chat_prompt(prompt), max_tokens=32, temperature=0, top_p=1, seed=0)
        assert a.text == b.text and a.n_tokens == b.n_tokens


def test_log_prob_parity_and_the_expected_judge_agree(engines):
    mlx, llama = engines
    for prompt, answer in zip(PROMPTS, ANSWERS):
        a = np.array(mlx.continuation_logprobs(mlx.chat_prompt(prompt), answer))
        b = np.array(llama.continuation_logprobs(llama.chat_prompt(prompt), answer))
        assert len(a) == len(b) and np.abs(a - b).mean() < PARITY_LIMIT
    scores_mlx = [expected_verdict(mlx, judge_prompt(mlx, PROMPTS[0], r), 0.5)["score"] for r in ANSWERS]
    scores_llama = [expected_verdict(llama, judge_prompt(llama, PROMPTS[0], r), 0.5)["score"] for r in ANSWERS]
    assert max(abs(x - y) for x, y in zip(scores_mlx, scores_llama)) < 0.05
    from srlm_lite.config import JudgeConfig

    batched = expected_verdicts_many(mlx, [(PROMPTS[0], r) for r in ANSWERS], JudgeConfig())
    assert [v[0]["score"] for v in batched] == pytest.approx(scores_mlx, abs=1e-3)


def test_each_candidate_is_reproducible_whatever_it_is_batched_with(engines):
    mlx, _ = engines
    settings = dict(max_tokens=24, temperature=0.7, top_p=0.9)
    together = mlx.complete_many([(mlx.chat_prompt(p), [11, 12, 13]) for p in PROMPTS[:2]], **settings)
    alone = mlx.complete_n(mlx.chat_prompt(PROMPTS[1]), seeds=[12], **settings)
    assert alone[0].text == together[1][1].text
    assert len({c.text for c in together[0]}) > 1  # different seeds, different candidates


def test_iterate_with_the_mlx_backend(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("iterations = 1\nseed = 3\n[instructions]\nnum_prompts = 3\n[responses]\nsamples = 2\n"
                      "max_tokens = 32\n[train]\nbatch_size = 2\n")
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--backend", "mlx", "--config", str(config),
                           "--out", str(tmp_path / "run"), "--json"], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    it = result["iterations"][0]
    assert it["responses"] == 6 and it["judged"] == 6 and it["pairs"] >= 1
    assert (tmp_path / "run" / "iter_1" / "adapter" / "adapters.safetensors").exists()
    assert 'backend = "mlx"' in (tmp_path / "run" / "config.toml").read_text()
