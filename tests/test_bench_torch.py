"""The PyTorch + PEFT twin of our DPO step (`bench_torch`): same model, same LoRA, a working DPO step."""

from __future__ import annotations

import re

import numpy as np
import pytest

from srlm_lite.tools import bench_torch
from srlm_lite.mlx_runtime import mx
from srlm_lite.config import TrainConfig

if bench_torch.available() is not None:
    pytest.skip(f"the `bench` extra is not installed: {bench_torch.available()}", allow_module_level=True)

import torch  # noqa: E402

torch.set_num_threads(1)


def _mlx_token_logps(model, tokens: list[list[int]]) -> np.ndarray:
    x = mx.array(tokens)
    logits = model(x[:, :-1]).astype(mx.float32)
    picked = mx.take_along_axis(logits, x[:, 1:, None], axis=-1).squeeze(-1)
    return np.array(picked - mx.logsumexp(logits, axis=-1))


def _torch_token_logps(model, tokens: list[list[int]]) -> np.ndarray:
    with torch.no_grad():
        return bench_torch.token_logps(model, torch.tensor(tokens)).numpy()


def test_tiny_model_converts_with_rope_layout_undone(tiny_model):
    tokens = [[1, 5, 9, 17, 33, 65, 100, 127, 3, 2]]
    ours = _mlx_token_logps(tiny_model, tokens)
    theirs = _torch_token_logps(bench_torch.torch_from_mlx(tiny_model), tokens)
    assert np.abs(ours - theirs).max() < 1e-4


def test_peft_lora_on_the_same_blocks_and_modules_with_the_same_scale(tiny_model):
    model = bench_torch.attach_peft_lora(bench_torch.torch_from_mlx(tiny_model),
                                         TrainConfig(lora_rank=4, lora_scale=20.0, lora_layers=1))
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {re.search(r"layers\.(\d+)\.", n)[1] for n in lora} == {"1"}  # the top block, as mlx-lm picks
    assert len(lora) == 7 * 2
    layer = model.base_model.model.model.layers[1].self_attn.q_proj
    assert layer.scaling["default"] == pytest.approx(20.0)  # alpha / r = scale


@pytest.fixture(scope="module")
def real_setup(real_model_path):
    from srlm_lite.models.tokenizer import ChatTokenizer
    from srlm_lite.models.mlx_model import load_mlx_model

    return real_model_path, load_mlx_model(real_model_path, dequantize=True), ChatTokenizer.from_gguf(real_model_path)


@pytest.mark.real
def test_torch_model_log_probs_match_mlx(real_setup):
    from srlm_lite.training.dpo import TokenizedPair, batch_logps

    _, mlx_model, tokenizer = real_setup
    chosen, c_len = tokenizer.sequence("Name a colour.", "Blue, like the sky.")
    rejected, r_len = tokenizer.sequence("Name a colour.", "A colour.")
    torch_model = bench_torch.torch_from_mlx(mlx_model)
    difference = np.abs(_mlx_token_logps(mlx_model, [chosen]) - _torch_token_logps(torch_model, [chosen])).max()
    assert difference < 1e-3, difference
    pair = [TokenizedPair("p", chosen, rejected, c_len, r_len)]  # padded batch, response tokens only
    ours = np.array(mx.concatenate(batch_logps(mlx_model, pair, tokenizer.eos_token_id)))
    with torch.no_grad():
        theirs = torch.cat(bench_torch.batch_logps(torch_model, pair, tokenizer.eos_token_id)).numpy()
    np.testing.assert_allclose(theirs, ours, atol=5e-3)


@pytest.mark.real
def test_two_pair_dpo_run_trains_the_lora(real_setup):
    from srlm_lite.training.dpo import tokenize_pairs

    path, mlx_model, tokenizer = real_setup
    config = TrainConfig(batch_size=1, max_length=64, lora_layers=2, learning_rate=1e-3)
    pairs = [{"id": "a", "prompt": "Say hi.", "chosen": "Hi there!", "rejected": "No."},
             {"id": "b", "prompt": "Add 2 and 2.", "chosen": "2 + 2 = 4.", "rejected": "5."}]
    tokenized, skipped = tokenize_pairs(pairs, tokenizer, config.max_length)
    assert skipped == 0
    model = bench_torch.attach_peft_lora(bench_torch.torch_from_mlx(mlx_model), config)
    result = bench_torch.dpo_tokens_per_second(path, tokenized, config, tokenizer.eos_token_id, threads=1, model=model)
    assert result["tokens_per_second"] > 0 and result["threads"] == 1
    assert result["tokens"] == sum(len(p.chosen) + len(p.rejected) for p in tokenized)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 2 * 7 and all(p.abs().max() > 0 for p in lora_b)
    assert torch.get_num_threads() == 1
