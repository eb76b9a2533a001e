"""The weights llama.cpp serves: the shipped GGUF, or its F16 copy made once, named by content, atomically."""

import pytest

from srlm_lite.engines.serving import served_model


def test_shipped_file_is_served_as_is_and_unknown_kinds_are_refused(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert served_model(model, "gguf") == model
    with pytest.raises(ValueError, match="serve must be one of"):
        served_model(model, "q2_k")


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("SRLM_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "not-a-model.gguf"
    model.write_bytes(b"this is not a GGUF file")
    with pytest.raises(RuntimeError, match="could not convert"):
        served_model(model, "f16")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.real
def test_f16_copy_is_made_once_and_matches_the_trained_float32_model(tmp_path, monkeypatch, real_model_path):
    from srlm_lite.models.mlx_model import load_mlx_model
    from srlm_lite.models.parity import parity_report

    monkeypatch.setenv("SRLM_CACHE", str(tmp_path))
    served = served_model(real_model_path, "f16")
    assert served.parent == tmp_path and served.name.endswith(".f16.gguf")
    made = served.stat().st_mtime_ns
    assert served_model(real_model_path, "f16") == served and served.stat().st_mtime_ns == made  # cached
    model = load_mlx_model(real_model_path, dequantize=True)
    f16 = parity_report(real_model_path, model=model, serve="f16")
    shipped = parity_report(real_model_path, model=model, serve="gguf")
    # F16 skips llama.cpp's 8-bit activation quantization: an order of magnitude closer to the MLX model
    assert f16["mean_abs_diff"] < 0.01 and f16["mean_abs_diff"] < shipped["mean_abs_diff"] / 5, (f16, shipped)
