"""Stage 5, DPO: train M_{t+1} from M_t with a LoRA in MLX (see `training.dpo`) and export it for the sampler."""

from __future__ import annotations

from ..training import LOG_FILE, REFERENCE_FILE, SUMMARY_FILE
from .pairs import FILE as PAIRS_FILE

__all__ = ["LOG_FILE", "REFERENCE_FILE", "SUMMARY_FILE", "run"]


def run(ctx) -> dict:
    """Stage 5 of iteration t: the sampler is released (its memory is MLX's now), then DPO on the iteration's pairs
    with reference = M_t; the adapter is saved in mlx-lm's layout and as a GGUF LoRA."""
    from ..training.dpo import train_iteration

    ctx.release_engine()
    return train_iteration(ctx.require(PAIRS_FILE, "pairs"), ctx.dir, ctx.config.train, base_model=ctx.paths.model,
                           init_adapter=ctx.model.adapter, run_seed=ctx.config.seed, iteration=ctx.t,
                           progress=ctx.hooks.progress)
