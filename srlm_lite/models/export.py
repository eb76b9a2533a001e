"""`srlm-lite export`: an iteration's model in the format another tool loads.

- `mlx-adapter`: the mlx-lm adapter folder for the model's Hugging Face / MLX folder (`mlx_lm.generate --model BASE
  --adapter-path OUT`). Our LoRA is trained on the GGUF's layout, where llama.cpp permutes the Q/K rows of llama
  models for its rope; for a Hugging Face base the Q/K LoRA output rows are permuted back. `with_base` also writes
  that base folder, converted from the GGUF (`hf_export`).
- `gguf-lora`: the GGUF LoRA adapter llama.cpp applies on the base GGUF (`llama-cli -m BASE --lora OUT`).
- `gguf`: the LoRA fused into the base weights, one GGUF llama.cpp loads alone (F16, or quantized by llama.cpp's own
  quantizer: `quant="Q8_0"`, `"Q4_K_M"`, ...).
- `ollama`: the fused GGUF and a `Modelfile` beside it (`ollama create NAME -f OUT/Modelfile`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..runs import ModelSpec, model_for_iteration
from .architectures import architecture, unpermute_qk
from .gguf import UnsupportedModelError, inspect_gguf, read_float_tensors

FORMATS = ("mlx-adapter", "gguf-lora", "gguf", "ollama")
QUANT_TYPES = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")


def export(run_dir: str | Path, k: int, fmt: str, out: str | Path, *, quant: str = "F16",
           with_base: bool = False) -> dict:
    """Export M_k of a run; {"format", "out", "files", ...} describes what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    spec = model_for_iteration(run_dir, k)
    if spec.adapter is None:
        raise ValueError(f"M{k} of {run_dir} is the base model itself: there is no adapter to export")
    out = Path(out)
    if fmt == "mlx-adapter":
        return export_mlx_adapter(spec, out, with_base=with_base)
    _require_gguf_base(spec, fmt)
    if fmt == "gguf-lora":
        return export_gguf_lora(spec, out)
    if fmt == "gguf":
        return export_fused_gguf(spec, out, quant=quant)
    return export_ollama(spec, out, quant=quant)


def _require_gguf_base(spec: ModelSpec, fmt: str) -> None:
    if not Path(spec.base).is_file():
        raise UnsupportedModelError(f"--format {fmt} needs a GGUF base model; {spec.base} is a model folder (export "
                                    f"--format mlx-adapter instead)")


def _adapter(spec: ModelSpec) -> tuple[dict, dict]:
    from ..training.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    folder = spec.adapter_dir
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    from ..mlx_runtime import mx

    return config, {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(folder / ADAPTER_WEIGHTS)).items()}


def export_mlx_adapter(spec: ModelSpec, out: Path, *, with_base: bool) -> dict:
    """The adapter in Hugging Face layout (Q/K LoRA rows un-permuted for a llama GGUF base); the config names the
    base it fits (the converted folder with `with_base`)."""
    from ..mlx_runtime import mx
    from ..training.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    config, weights = _adapter(spec)
    if Path(spec.base).is_file() and config.get("srlm_layout", "gguf") == "gguf":
        weights = hf_layout_lora(weights, inspect_gguf(spec.base))
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base" if with_base else None
    if base is not None:
        from .hf_export import gguf_to_hf_folder

        gguf_to_hf_folder(spec.base, base, chat_template=_template_text(spec))
    mx.save_safetensors(str(out / ADAPTER_WEIGHTS), {k: mx.array(v) for k, v in weights.items()})
    fits = str(base.resolve()) if base is not None else _hf_base_name(spec)
    (out / ADAPTER_CONFIG).write_text(json.dumps({**config, "srlm_layout": "hf", "base_model": fits}, indent=2) + "\n")
    return {"format": "mlx-adapter", "out": str(out), "base_model": fits,
            "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())}


def hf_layout_lora(weights: dict[str, np.ndarray], info) -> dict[str, np.ndarray]:
    """LoRA weights trained on a llama GGUF's layout, for the Hugging Face layout: the output rows of the Q and K
    LoRAs (lora_b's columns) un-permuted as the base weights are (`unpermute_qk`)."""
    arch = architecture(info.architecture)
    if not arch.qk_permuted:
        return dict(weights)
    out = {}
    for name, value in weights.items():
        if name.endswith(("q_proj.lora_b", "k_proj.lora_b")):
            heads = info.n_heads if ".q_proj." in name else info.n_kv_heads
            value = np.ascontiguousarray(unpermute_qk(value.T, heads).T)
        out[name] = value
    return out


def _hf_base_name(spec: ModelSpec) -> str:
    """The base an mlx-lm adapter fits, when no folder is written: the GGUF's source repository if it names one."""
    if not Path(spec.base).is_file():
        return str(spec.base)
    from gguf import GGUFReader

    fields = GGUFReader(str(spec.base)).fields
    for key in ("general.source.huggingface.repository", "general.base_model.0.repo_url"):
        if key in fields:
            return str(fields[key].contents())
    organization = fields.get("general.organization")
    basename = fields.get("general.basename")
    if organization and basename:
        return f"{organization.contents()}/{basename.contents()} (the Hugging Face folder of {Path(spec.base).name})"
    return f"the Hugging Face folder of {Path(spec.base).name} (export again with --with-base to write it)"


def _template_text(spec: ModelSpec) -> str | None:
    from .tokenizer import read_chat_template

    return read_chat_template(spec.chat_template)


def export_gguf_lora(spec: ModelSpec, out: Path) -> dict:
    """The GGUF LoRA adapter as it is (llama.cpp's layout and tensor names)."""
    out = out if out.suffix == ".gguf" else out / "adapter.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.lora_gguf, out)
    return {"format": "gguf-lora", "out": str(out), "base_model": str(spec.base), "files": [out.name]}


def fused_tensors(spec: ModelSpec) -> dict[str, np.ndarray]:
    """The base GGUF's tensors (float32) with the LoRA added: W += scale * (lora_a @ lora_b)^T, in GGUF layout."""
    config, weights = _adapter(spec)
    info = inspect_gguf(spec.base)
    arch = architecture(info.architecture)
    scale = float(config["lora_parameters"]["scale"])
    tensors = read_float_tensors(spec.base)
    for name, lora_a in weights.items():
        if not name.endswith(".lora_a"):
            continue
        module = name[: -len(".lora_a")]
        layer, key = module[len("model.layers."):].split(".", 1)
        target = f"blk.{layer}.{arch.gguf_lora_name(key)}.weight"
        tensors[target] = tensors[target] + scale * (lora_a @ weights[module + ".lora_b"]).T
    return tensors


def export_fused_gguf(spec: ModelSpec, out: Path, *, quant: str = "F16") -> dict:
    """One GGUF with the LoRA fused in: every field of the base copied (tokenizer, chat template, architecture),
    matrices in F16, then quantized by llama.cpp's quantizer if `quant` is not F16."""
    from .gguf_writer import write_gguf

    if quant not in QUANT_TYPES:
        raise ValueError(f"--quant must be one of {', '.join(QUANT_TYPES)}, got {quant!r}")
    out = out if out.suffix == ".gguf" else out / "model.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = inspect_gguf(spec.base)
    f16 = out if quant == "F16" else out.with_name(out.stem + ".f16.gguf")
    write_gguf(f16, info.architecture, info.meta, fused_tensors(spec), fields_from=spec.base,
               keep=lambda key: key not in ("general.architecture", "general.file_type"), architecture_fields=False)
    if quant != "F16":
        _quantize(f16, out, quant)
        f16.unlink()
    return {"format": "gguf", "out": str(out), "quant": quant, "files": [out.name]}


def _quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's own quantizer (`llama_model_quantize`)."""
    import os

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if code != 0 or not target.exists():
        raise RuntimeError(f"llama.cpp could not quantize {source} to {quant} (code {code})")


def export_ollama(spec: ModelSpec, out: Path, *, quant: str = "F16") -> dict:
    """The fused GGUF and a Modelfile (FROM, TEMPLATE in Ollama's Go syntax, stop parameters) in `out`."""
    from .ollama import modelfile
    from .tokenizer import ChatTokenizer

    out.mkdir(parents=True, exist_ok=True)
    fused = export_fused_gguf(spec, out / "model.gguf", quant=quant)
    template = _template_text(spec) or ChatTokenizer.from_gguf(spec.base).template_source
    (out / "Modelfile").write_text(modelfile("./model.gguf", template))
    return {"format": "ollama", "out": str(out), "quant": quant, "files": ["Modelfile", Path(fused["out"]).name],
            "create": f"ollama create NAME -f {out / 'Modelfile'}"}
