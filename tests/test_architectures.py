"""Every architecture on both engines: tiny random llama, qwen2, qwen3, gemma3 and phi3 models, written as a model
folder (Hugging Face layout) and as a GGUF (llama.cpp's layout), load in llama.cpp and in MLX with per-token
log-prob parity under 0.01 nats; a LoRA trained in MLX on each is applied by llama.cpp with the same parity."""

from __future__ import annotations

import numpy as np
import pytest

from srlm_lite.engines import EngineOptions, open_engine
from srlm_lite.mlx_runtime import mx
from srlm_lite.models.architectures import SUPPORTED_ARCHITECTURES, architecture
from srlm_lite.models.gguf import inspect_gguf
from srlm_lite.models.mlx_model import load_mlx_model
from srlm_lite.models.tokenizer import ChatTokenizer
from srlm_lite.runs import ModelSpec

from tiny_models import tiny_model, write_folder, write_gguf_of

pytestmark = pytest.mark.real

PARITY = 0.01
PROMPT = "What is the capital of France?"
ANSWER = "The capital of France is Paris, a city on the Seine known for the Eiffel Tower and its museums."


@pytest.fixture(scope="module")
def tokenizer(real_model_path):
    return ChatTokenizer.from_gguf(real_model_path)


def _logprobs(engine, tokenizer) -> np.ndarray:
    return np.array(engine.continuation_logprobs(tokenizer.prompt_text(PROMPT), ANSWER))


def _train_lora(gguf, arch_name: str, adapter_dir, tokenizer) -> None:
    """A few SFT steps on one answer with the shared LoRA loop, saved for both engines (`save_policy`)."""
    from srlm_lite.config import TrainConfig
    from srlm_lite.training.logps import sequence_logps
    from srlm_lite.training.loop import train_lora
    from srlm_lite.training.policy import open_policy, save_policy

    config = TrainConfig(lora_rank=4, lora_scale=20.0)
    model, _, lora_config = open_policy(gguf, None, config, seed=0)
    tokens, prompt_len = tokenizer.sequence(PROMPT, ANSWER)
    batch = (mx.array([tokens]), mx.array([prompt_len]), mx.array([len(tokens)]))

    def objective(m, b):
        return -sequence_logps(m, *b).sum() / (len(tokens) - prompt_len), {}

    train_lora(model, [[batch]] * 5, objective, learning_rate=1e-2, log_path=adapter_dir.parent / "log.jsonl",
               describe=lambda b: {}, stage="tiny")
    assert lora_config["lora_parameters"]["keys"] == list(architecture(arch_name).lora_keys)
    save_policy(model, adapter_dir, lora_config, gguf)


@pytest.mark.parametrize("arch_name", SUPPORTED_ARCHITECTURES)
def test_every_architecture_on_both_engines_with_a_lora(arch_name, tmp_path, real_model_path, tokenizer):
    model = tiny_model(arch_name)
    folder = write_folder(model, arch_name, tmp_path / "folder", real_model_path)
    gguf = write_gguf_of(model, arch_name, tmp_path / "model.gguf", real_model_path)
    assert inspect_gguf(gguf).architecture == arch_name
    llama = open_engine(ModelSpec(gguf), EngineOptions(serve="gguf", batched=False))
    reference = _logprobs(llama, tokenizer)
    assert reference.std() > 0.05  # a model whose log-probs vary: parity below means something
    for spec in (ModelSpec(folder), ModelSpec(gguf)):  # MLX: mlx-lm's loader, and ours from the GGUF
        mlx = open_engine(spec, EngineOptions(backend="mlx"))
        assert np.abs(_logprobs(mlx, tokenizer) - reference).mean() < PARITY, spec.base.name
    built = load_mlx_model(gguf)  # our GGUF loader builds mlx-lm's class of the architecture
    assert type(built).__module__ == architecture(arch_name).module

    adapter = tmp_path / "adapter"
    _train_lora(gguf, arch_name, adapter, tokenizer)
    tuned_llama = _logprobs(open_engine(ModelSpec(gguf, adapter), EngineOptions(serve="gguf", batched=False)),
                            tokenizer)
    tuned_mlx = _logprobs(open_engine(ModelSpec(gguf, adapter), EngineOptions(backend="mlx")), tokenizer)
    assert np.abs(tuned_llama - reference).mean() > 0.05  # the LoRA changed the model llama.cpp serves
    assert np.abs(tuned_llama - tuned_mlx).mean() < PARITY
