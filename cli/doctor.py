"""`srlm-lite doctor`: environment checks and MLX-vs-llama.cpp parity (base model and a run's models)."""

from __future__ import annotations

import click
from rich.table import Table

from .ui import err, print_json_last


@click.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="Also check parity for each iteration's model of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def doctor(run_dir, as_json):
    """Check MLX (device, BLAS speed), llama.cpp, the embedded model, and MLX/llama.cpp log-prob parity."""
    from srlm_lite.tools import doctor as lib

    with err.status("measuring the environment..."):
        env = lib.environment()
    mlx, llama, model = env["mlx"], env["llama_cpp"], env["model"]
    table = Table(title="srlm-lite doctor", show_header=False)
    table.add_row("MLX device", mlx["device"])
    table.add_row("BLAS", f"{'ok' if mlx['blas_loaded'] else 'SLOW'}: {mlx['blas_message']}")
    table.add_row("MLX matmul",
                  f"{mlx['matmul_gflops']} GFLOP/s (without our BLAS: {mlx['matmul_gflops_without_blas']})")
    table.add_row("llama.cpp", f"llama-cpp-python {llama.get('version')}" if llama["available"] else llama["error"])
    table.add_row("embedded model", model.get("path", model.get("error", "")))
    table.add_row("default backend", env["backend"]["why"])
    err.print(table)
    with err.status("engine parity (MLX vs llama.cpp log-probs)..."):
        rows = lib.parity(run_dir)
    parity_table = Table(title=f"engine parity, MLX (trains; the mlx backend) vs llama.cpp (the llama-cpp backend): "
                               f"mean |Δ log p| per token (limit {lib.PARITY_LIMIT})")
    for name in ("model", "llama.cpp serves", "tokens", "mean |Δ|", "max |Δ|", "ok"):
        parity_table.add_column(name)
    for row in rows:
        parity_table.add_row(row["model"], row["serve"], str(row["n_tokens"]), f"{row['mean_abs_diff']:.4f}",
                             f"{row['max_abs_diff']:.3f}", "yes" if row["ok"] else "[red]NO[/red]")
    err.print(parity_table)
    if as_json:
        print_json_last({**env, "parity": rows})
    if not all(r["ok"] for r in rows) or not model.get("embedded_found", False):
        raise SystemExit(1)
