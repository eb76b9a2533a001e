"""`srlm-lite export`: an iteration's model for mlx-lm, llama.cpp or Ollama."""

from __future__ import annotations

import click

from srlm_lite.models.export import FORMATS, QUANT_TYPES

from .options import choice
from .ui import err, out, print_json_last


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run directory made by `srlm-lite iterate`.")
@click.option("--iteration", required=True, type=click.IntRange(min=1), help="K: export M_K (its adapter).")
@click.option("--format", "fmt", required=True, type=choice(FORMATS),
              help="mlx-adapter: mlx-lm adapter folder for the model's Hugging Face/MLX folder; gguf-lora: llama.cpp "
                   "LoRA adapter (--lora); gguf: the LoRA fused into one GGUF; ollama: fused GGUF + Modelfile.")
@click.option("--out", "out_path", required=True, type=click.Path(), help="Output folder (or .gguf file).")
@click.option("--quant", type=choice(QUANT_TYPES), default="F16", show_default=True,
              help="gguf/ollama: quantize the fused model with llama.cpp's quantizer.")
@click.option("--with-base", is_flag=True,
              help="mlx-adapter: also write the base model as a Hugging Face folder (converted from the GGUF) into "
                   "OUT/base, which the adapter's config then names.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def export(run_dir, iteration, fmt, out_path, quant, with_base, as_json):
    """Export M_K of a run: mlx-lm adapter, llama.cpp GGUF LoRA, fused GGUF, or an Ollama Modelfile."""
    from srlm_lite.models.export import export as run_export

    with err.status(f"exporting M{iteration} as {fmt}..."):
        result = run_export(run_dir, iteration, fmt, out_path, quant=quant, with_base=with_base)
    err.print(f"wrote {', '.join(result['files'])} to {result['out']}")
    if result.get("create"):
        err.print(f"then: {result['create']}")
    if as_json:
        print_json_last(result)
    else:
        out.print(result["out"])
