"""Our LoRA in PEFT's layout (for vLLM's `--lora-modules` and other servers on a Hugging Face-layout base): tensor
names, transposes and the config as pure functions, and the export of a LoRA trained on the embedded GGUF checked
against the mlx-lm adapter export that `tests/test_export.py` verifies in mlx-lm itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srlm_lite.training.export_peft import PEFT_CONFIG, PEFT_WEIGHTS, export_peft, peft_config, peft_tensors


def test_peft_tensors_are_transposed_and_named_as_peft_names_them():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)  # mlx-lm lora_a: (in, r)
    b = np.arange(8, dtype=np.float32).reshape(2, 4)  # mlx-lm lora_b: (r, out)
    out = peft_tensors({"model.layers.0.self_attn.q_proj.lora_a": a, "model.layers.0.self_attn.q_proj.lora_b": b})
    A = out["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    B = out["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert A.shape == (2, 3) and B.shape == (4, 2)  # PEFT: lora_A (r, in), lora_B (out, r)
    np.testing.assert_array_equal(B @ A, (a @ b).T)  # the same update, as PEFT's W + B A applies it
    with pytest.raises(ValueError, match="not a LoRA tensor"):
        peft_tensors({"model.layers.0.self_attn.q_proj.weight": a})


def test_peft_config_scales_alpha_by_rank_and_names_the_adapted_blocks():
    ours = {"num_layers": 2, "lora_parameters": {"rank": 8, "scale": 20.0,
                                                  "keys": ["self_attn.q_proj", "mlp.down_proj", "self_attn.q_proj"]}}
    config = peft_config(ours, n_layers=30, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert config["lora_alpha"] == 160.0 and config["r"] == 8  # PEFT scales by alpha / r = 20
    assert config["target_modules"] == ["down_proj", "q_proj"] and config["layers_to_transform"] == [28, 29]
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"].endswith("SmolLM2-135M-Instruct")
    assert "layers_to_transform" not in peft_config({**ours, "num_layers": 30}, n_layers=30)


def test_export_matches_the_mlx_adapter_export_for_a_hugging_face_base(tmp_path, real_model_path):
    """A random LoRA trained on the GGUF's layout (Q/K rows permuted for llama.cpp's rope): the PEFT tensors are the
    mlx-lm export's (Q/K rows put back in Hugging Face order), transposed; alpha / r is the LoRA's scale."""
    from srlm_lite.mlx_runtime import mx
    from srlm_lite.models.export import export_mlx_adapter
    from srlm_lite.models.mlx_model import load_mlx_model
    from srlm_lite.runs import ModelSpec
    from srlm_lite.training.lora import ADAPTER_WEIGHTS, attach_lora, save_adapter

    mx.random.seed(3)
    model = load_mlx_model(real_model_path, dequantize=False)
    lora = attach_lora(model, rank=2, scale=4.0, num_layers=2)
    for layer in model.model.layers[-2:]:  # lora_b starts at zero: make every update non-zero
        for module in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.mlp.up_proj):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.01
    adapter = tmp_path / "adapter"
    save_adapter(model, adapter, {**lora, "srlm_base_model": str(real_model_path), "srlm_layout": "gguf"})
    export_peft(adapter, real_model_path, tmp_path / "peft", base_name="smollm2")
    export_mlx_adapter(ModelSpec(real_model_path, adapter), tmp_path / "mlx", with_base=False)

    peft = {k: np.array(v) for k, v in mx.load(str(tmp_path / "peft" / PEFT_WEIGHTS)).items()}
    hf = {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(tmp_path / "mlx" / ADAPTER_WEIGHTS)).items()}
    trained = {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(adapter / ADAPTER_WEIGHTS)).items()}
    assert len(peft) == len(hf) == 2 * 7 * 2
    for name, value in hf.items():
        prefix, leaf = name.rsplit(".", 1)
        peft_name = f"base_model.model.{prefix}.lora_{'A' if leaf == 'lora_a' else 'B'}.weight"
        np.testing.assert_array_equal(peft[peft_name], value.T, err_msg=name)
    q_b = "model.layers.29.self_attn.q_proj.lora_b"
    assert not np.array_equal(hf[q_b], trained[q_b])  # the Q rows were put back in Hugging Face order
    assert sorted(hf[q_b].ravel().tolist()) == sorted(trained[q_b].ravel().tolist())  # a permutation, no more
    config = json.loads((tmp_path / "peft" / PEFT_CONFIG).read_text())
    assert config["lora_alpha"] / config["r"] == 4.0 and config["layers_to_transform"] == [28, 29]
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"}
