"""Tests for GGUF inspection/loading into MLX, LoRA adapters (MLX and GGUF export) and engine parity."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

from srlm_lite.blas import ensure_fast_blas
from srlm_lite.mlx_runtime import mx
from srlm_lite.training.lora import (
    DEFAULT_KEYS,
    adapter_weights,
    attach_lora,
    export_gguf_lora,
    load_adapter,
    save_adapter,
)
from srlm_lite.models.gguf import UnsupportedModelError, inspect_gguf
from srlm_lite.models.mlx_model import load_mlx_model, mlx_name

import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

TOKENS = [3, 17, 99, 5, 64, 1, 127, 42, 8, 8, 23]
GGUF_PART = {v: k for k, v in {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}.items()}


def _logits(model) -> np.ndarray:
    return np.array(model(mx.array([TOKENS])).astype(mx.float32))


def _fresh_copy(model):
    """A new model of the same architecture with the same (base) weights."""
    clone = type(model)(model.args)
    clone.load_weights(tree_flatten(model.parameters()))
    clone.freeze()
    return clone


def _randomize_lora_b(model, std: float, seed: int = 0) -> None:
    mx.random.seed(seed)
    updates = [(k, mx.random.normal(v.shape) * std) for k, v in adapter_weights(model).items() if k.endswith("lora_b")]
    model.load_weights(updates, strict=False)
    mx.eval(model.parameters())


# ---------------------------------------------------------------- blas


def test_ensure_fast_blas_is_idempotent():
    first, second = ensure_fast_blas(), ensure_fast_blas()
    assert first is second
    assert first.message


# ---------------------------------------------------------------- LoRA


def test_attach_lora_makes_only_lora_trainable(tiny_model):
    config = attach_lora(tiny_model, rank=4, scale=10.0)
    names = list(adapter_weights(tiny_model))
    assert len(names) == 2 * len(DEFAULT_KEYS) * 2
    assert all(n.rsplit(".", 1)[-1] in ("lora_a", "lora_b") for n in names)
    assert config == {
        "fine_tune_type": "lora", "num_layers": 2,
        "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0, "keys": list(DEFAULT_KEYS)},
    }


def test_attach_lora_last_layers_only(tiny_model):
    config = attach_lora(tiny_model, num_layers=1, keys=["self_attn.q_proj"])
    assert list(adapter_weights(tiny_model)) == [
        "model.layers.1.self_attn.q_proj.lora_a", "model.layers.1.self_attn.q_proj.lora_b"]
    assert config["num_layers"] == 1


def test_adapter_round_trip_gives_identical_outputs(tiny_model, tmp_path):
    clone = _fresh_copy(tiny_model)
    base = _logits(tiny_model)
    config = attach_lora(tiny_model, rank=4)
    _randomize_lora_b(tiny_model, std=0.05)
    adapted = _logits(tiny_model)
    assert np.abs(adapted - base).max() > 1e-3  # the adapter really changes the model
    save_adapter(tiny_model, tmp_path / "adapter", config)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapters.safetensors"]

    loaded_config = load_adapter(clone, tmp_path / "adapter")
    assert loaded_config == config
    np.testing.assert_allclose(_logits(clone), adapted, rtol=0, atol=1e-5)


def test_mlx_lm_loads_our_adapter(tiny_model, tmp_path):
    from mlx_lm.tuner.utils import load_adapters

    clone = _fresh_copy(tiny_model)
    config = attach_lora(tiny_model, rank=4)
    _randomize_lora_b(tiny_model, std=0.05)
    save_adapter(tiny_model, tmp_path, config)
    load_adapters(clone, str(tmp_path))
    np.testing.assert_allclose(_logits(clone), _logits(tiny_model), rtol=0, atol=1e-5)


def test_load_adapter_rejects_mismatched_weights(tiny_model, tmp_path):
    clone = _fresh_copy(tiny_model)
    config = attach_lora(tiny_model, rank=4)
    save_adapter(tiny_model, tmp_path, config)
    config["num_layers"] = 1
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match"):
        load_adapter(clone, tmp_path)


def test_export_gguf_lora_names_shapes_alpha(tiny_model, tmp_path):
    config = attach_lora(tiny_model, rank=4, scale=20.0)
    _randomize_lora_b(tiny_model, std=0.05)
    save_adapter(tiny_model, tmp_path / "a", config)
    out = export_gguf_lora(tmp_path / "a", tmp_path / "a" / "adapter.gguf")

    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(80.0)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 7 * 2
    weights = adapter_weights(tiny_model)
    layer = tiny_model.layers[1]
    for key, part in [("self_attn.k_proj", "attn_k"), ("mlp.down_proj", "ffn_down"), ("self_attn.o_proj", "attn_output")]:
        out_dims, in_dims = dict(layer.named_modules())[key].linear.weight.shape
        a, b = tensors[f"blk.1.{part}.weight.lora_a"], tensors[f"blk.1.{part}.weight.lora_b"]
        assert a.tensor_type == T.F32 and b.tensor_type == T.F32
        assert tuple(a.data.shape) == (4, in_dims) and tuple(b.data.shape) == (out_dims, 4)
        np.testing.assert_array_equal(a.data, np.array(weights[f"model.layers.1.{key}.lora_a"]).T)
        np.testing.assert_array_equal(b.data, np.array(weights[f"model.layers.1.{key}.lora_b"]).T)


# ---------------------------------------------------------------- GGUF inspection and loading


def _write_gguf(path: Path, arch: str, tensors: dict[str, tuple[np.ndarray, T]], args=None) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    if args is not None:
        writer.add_block_count(args.num_hidden_layers)
        writer.add_embedding_length(args.hidden_size)
        writer.add_feed_forward_length(args.intermediate_size)
        writer.add_head_count(args.num_attention_heads)
        writer.add_head_count_kv(args.num_key_value_heads)
        writer.add_rope_freq_base(args.rope_theta)
        writer.add_layer_norm_rms_eps(args.rms_norm_eps)
        writer.add_context_length(256)
    for name, (array, qtype) in tensors.items():
        data = array if qtype == T.F32 else (array.astype(np.float16) if qtype == T.F16 else quantize(array, qtype))
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf_name(mlx_key: str) -> str:
    if mlx_key == "model.embed_tokens.weight":
        return "token_embd.weight"
    if mlx_key == "model.norm.weight":
        return "output_norm.weight"
    _, _, n, *rest = mlx_key.split(".")
    return f"blk.{n}.{GGUF_PART['.'.join(rest[:-1])]}.weight"


def _tiny_gguf(model, path: Path, linear_type: T = T.F32, embed_type: T = T.F32) -> Path:
    tensors = {}
    for key, value in tree_flatten(model.parameters()):
        qtype = embed_type if "embed" in key else (linear_type if value.ndim == 2 else T.F32)
        tensors[_gguf_name(key)] = (np.array(value), qtype)
    return _write_gguf(path, "llama", tensors, model.args)


def test_mlx_name_mapping():
    assert mlx_name("blk.7.attn_output.weight") == "model.layers.7.self_attn.o_proj.weight"
    assert mlx_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert mlx_name("blk.2.ffn_gate.scales") == "model.layers.2.mlp.gate_proj.scales"
    assert mlx_name("token_embd.biases") == "model.embed_tokens.biases"
    assert mlx_name("output.weight") == "lm_head.weight"
    assert mlx_name("rope_freqs.weight") is None


def test_inspect_gguf_reads_metadata(tiny_model, tmp_path):
    info = inspect_gguf(_tiny_gguf(tiny_model, tmp_path / "tiny.gguf", T.Q4_1, T.Q8_0))
    assert (info.architecture, info.n_layers, info.hidden_size, info.intermediate_size) == ("llama", 2, 64, 128)
    assert (info.n_heads, info.n_kv_heads, info.head_dim, info.vocab_size) == (4, 2, 16, 128)
    assert info.tied_embeddings and info.rope_theta == 10000.0
    assert info.tensor_types == {"Q8_0": 1, "Q4_1": 14, "F32": 5}


def test_inspect_gguf_rejects_other_architecture(tmp_path):
    path = _write_gguf(tmp_path / "g.gguf", "gpt2", {"token_embd.weight": (np.zeros((8, 32), np.float32), T.F32)})
    with pytest.raises(UnsupportedModelError, match="architecture 'gpt2'.*supported: llama"):
        inspect_gguf(path)


def test_inspect_gguf_rejects_unsupported_tensor_type(tmp_path):
    path = tmp_path / "i32.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", np.ones((8, 64), np.int32), raw_dtype=T.I32)
    for step in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file, writer.close):
        step()
    with pytest.raises(UnsupportedModelError, match=r"I32.*supported: .*Q4_K.*Q5_0"):
        inspect_gguf(path)


@pytest.mark.parametrize("qtype", [T.Q5_0, T.Q5_1])  # K-quants (rows of 256): the real Gemma 3 test
def test_k_quants_and_q5_are_dequantized_into_mlx(tiny_model, tmp_path, qtype):
    """Types MLX cannot keep quantized are dequantized by the `gguf` package: the model matches the float one
    within the quantization error (checked on the logits against the same weights quantized and dequantized)."""
    from gguf.quants import dequantize

    reference = _tiny_gguf(tiny_model, tmp_path / "f32.gguf")
    quantized = _tiny_gguf(tiny_model, tmp_path / f"{qtype.name}.gguf", linear_type=qtype)
    assert inspect_gguf(quantized).tensor_types.get(qtype.name) and not inspect_gguf(quantized).mlx_native
    loaded, exact = load_mlx_model(quantized), load_mlx_model(reference)
    weight = np.array(loaded.model.layers[0].mlp.down_proj.weight)
    original = np.array(exact.model.layers[0].mlp.down_proj.weight)
    expected = dequantize(quantize(original, qtype), qtype)
    np.testing.assert_allclose(weight, expected, rtol=0, atol=1e-6)
    assert np.abs(weight - original).max() > 0  # it was really quantized


def test_load_float_gguf_reproduces_model(tiny_model, tmp_path):
    path = _tiny_gguf(tiny_model, tmp_path / "f32.gguf")
    loaded = load_mlx_model(path)
    assert loaded.args.rope_traditional
    assert not adapter_weights(loaded)  # frozen
    np.testing.assert_allclose(_logits(loaded), _logits(tiny_model), rtol=0, atol=1e-4)


def test_load_quantized_gguf_both_ways(tiny_model, tmp_path):
    path = _tiny_gguf(tiny_model, tmp_path / "q.gguf", T.Q4_0, T.Q8_0)
    dense = load_mlx_model(path, dequantize=True)
    quant = load_mlx_model(path, dequantize=False)
    assert isinstance(dense.layers[0].mlp.up_proj, nn.Linear)
    assert dense.layers[0].mlp.up_proj.weight.dtype == mx.float32
    q_up, q_embed = quant.layers[0].mlp.up_proj, quant.model.embed_tokens
    assert isinstance(q_up, nn.QuantizedLinear) and (q_up.bits, q_up.group_size) == (4, 32)
    assert isinstance(q_embed, nn.QuantizedEmbedding) and (q_embed.bits, q_embed.group_size) == (8, 32)
    np.testing.assert_allclose(_logits(dense), _logits(quant), rtol=0, atol=1e-3)
    # 4-bit weights stay close to the originals, but not equal
    diff = np.abs(_logits(dense) - _logits(tiny_model)).max()
    assert 0 < diff < 1.0


# ---------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real_model(real_model_path):
    return load_mlx_model(real_model_path)


@pytest.mark.real
def test_embedded_gguf_inspects(real_model_path):
    info = inspect_gguf(real_model_path)
    assert (info.n_layers, info.hidden_size, info.n_heads, info.n_kv_heads, info.vocab_size) == (30, 576, 9, 3, 49152)
    assert info.tied_embeddings and "<|im_start|>" in info.chat_template


@pytest.mark.real
def test_real_model_answers_paris(real_model, real_model_path):
    from srlm_lite.models.tokenizer import ChatTokenizer
    from srlm_lite.models.mlx_model import greedy_generate

    tok = ChatTokenizer.from_gguf(real_model_path)
    prompt = tok.encode(tok.prompt_text("What is the capital of France?"))
    answer = tok.decode(greedy_generate(real_model, prompt, max_tokens=20, stop_ids=(tok.eos_token_id,)))
    assert "Paris" in answer


@pytest.mark.real
def test_base_parity(real_model, real_model_path):
    from srlm_lite.models.parity import parity_report

    report = parity_report(real_model_path, model=real_model)
    assert report["n_tokens"] > 100
    assert report["mean_abs_diff"] < 0.1, report


@pytest.mark.real
def test_adapter_moves_llama_and_keeps_parity(real_model_path, tmp_path):
    from srlm_lite.models.parity import parity_logprobs, summarize_parity

    model = load_mlx_model(real_model_path)
    mlx_base, llama_base = parity_logprobs(real_model_path, model=model)
    mx.random.seed(1)
    config = attach_lora(model, rank=8, scale=20.0)
    _randomize_lora_b(model, std=0.005, seed=1)
    save_adapter(model, tmp_path, config)  # parity_logprobs exports the GGUF adapter itself
    mlx_lora, llama_lora = parity_logprobs(real_model_path, adapter_dir=tmp_path, model=model)

    d_mlx = np.concatenate(mlx_lora) - np.concatenate(mlx_base)
    d_llama = np.concatenate(llama_lora) - np.concatenate(llama_base)
    assert abs(d_llama.sum()) > 1.0, d_llama.sum()
    assert np.corrcoef(d_mlx, d_llama)[0, 1] > 0.8  # both engines move the same tokens the same way
    report = summarize_parity(mlx_lora, llama_lora)
    assert report["mean_abs_diff"] < 0.1, report
