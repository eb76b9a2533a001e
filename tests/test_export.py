"""`srlm-lite export`: each format loads in the tool it is for, with log-prob parity to the trained model: the
mlx-lm adapter folder in mlx-lm on a Hugging Face base built from the GGUF, the GGUF LoRA and the fused GGUF in
llama-cpp-python, and the Ollama Modelfile has its fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srlm_lite.config import RunConfig, TrainConfig, to_toml
from srlm_lite.mlx_runtime import mx
from srlm_lite.models.ollama import CHATML, GEMMA, modelfile, template_family
from srlm_lite.models.parity import llama_logprobs_many, mlx_token_logprobs

PROMPT, ANSWER = "Give me two tips for sleeping better.", "Go to bed at the same time every day and keep screens away."


def test_modelfile_translates_known_chat_template_families():
    assert template_family("{{ '<|im_start|>' + message['role'] }}")[0] == CHATML
    assert template_family("<start_of_turn>user")[0] == GEMMA and template_family("[INST]") is None
    text = modelfile("./model.gguf", "...<|im_start|>...")
    assert text.startswith("FROM ./model.gguf\n") and 'TEMPLATE """' in text and 'PARAMETER stop "<|im_end|>"' in text
    other = modelfile("./m.gguf", "[INST] {{ x }}")
    assert 'TEMPLATE """' not in other and "# add a TEMPLATE" in other


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, real_model_path):
    """A run directory whose iteration 1 holds a LoRA trained by a few SFT steps on the embedded model."""
    from srlm_lite.training.logps import sequence_logps
    from srlm_lite.training.loop import train_lora
    from srlm_lite.training.policy import open_policy, save_policy

    run = tmp_path_factory.mktemp("export_run")
    (run / "config.toml").write_text(to_toml(RunConfig()))
    model, tokenizer, lora_config = open_policy(real_model_path, None, TrainConfig(), seed=0)
    tokens, prompt_len = tokenizer.sequence(PROMPT, ANSWER)
    batch = (mx.array([tokens]), mx.array([prompt_len]), mx.array([len(tokens)]))
    train_lora(model, [[batch]] * 4, lambda m, b: (-sequence_logps(m, *b).sum() / 20, {}), learning_rate=2e-3,
               log_path=run / "log.jsonl", describe=lambda b: {}, stage="export-test")
    save_policy(model, run / "iter_1" / "adapter", lora_config, real_model_path)
    ids = tokenizer.encode(tokenizer.prompt_text(PROMPT) + ANSWER)
    return run, ids, mlx_token_logprobs(model, ids)


@pytest.mark.real
def test_every_format_loads_in_its_tool_with_parity(trained_run, real_model_path, tmp_path):
    from mlx_lm.utils import load as mlx_lm_load

    from srlm_lite.models.export import export
    from srlm_lite.models.mlx_model import load_mlx_model

    run, ids, trained = trained_run
    base = mlx_token_logprobs(load_mlx_model(real_model_path), ids)
    assert np.abs(trained - base).mean() > 0.05  # the adapter changed the model: parity below means something

    folder = export(run, 1, "mlx-adapter", tmp_path / "mlx", with_base=True)
    config = json.loads((tmp_path / "mlx" / "adapter_config.json").read_text())
    assert config["base_model"] == folder["base_model"] and config["srlm_layout"] == "hf"
    model, _ = mlx_lm_load(str(tmp_path / "mlx" / "base"), adapter_path=str(tmp_path / "mlx"))
    model.set_dtype(mx.float32)
    assert np.abs(mlx_token_logprobs(model, ids) - trained).mean() < 0.01

    lora = export(run, 1, "gguf-lora", tmp_path / "lora.gguf")
    served = llama_logprobs_many(real_model_path, [ids], lora_path=lora["out"], serve="f16")[0]
    assert np.abs(served - trained).mean() < 0.01

    fused = export(run, 1, "gguf", tmp_path / "fused.gguf")
    alone = llama_logprobs_many(fused["out"], [ids], serve="gguf")[0]
    assert np.abs(alone - trained).mean() < 0.02

    ollama = export(run, 1, "ollama", tmp_path / "ollama", quant="Q8_0")
    text = (tmp_path / "ollama" / "Modelfile").read_text()
    assert text.startswith("FROM ./model.gguf") and "<|im_start|>" in text and "PARAMETER stop" in text
    assert (tmp_path / "ollama" / "model.gguf").stat().st_size < (tmp_path / "fused.gguf").stat().st_size
    assert ollama["quant"] == "Q8_0"
