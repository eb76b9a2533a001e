"""Stage 5, DPO: train M_{t+1} from M_t with a LoRA in MLX (see `training.dpo`) and export it for the sampler."""

from __future__ import annotations

from ..training import LOG_FILE, REFERENCE_FILE, SUMMARY_FILE
from .pairs import FIELDS as PAIRS_FIELDS
from .pairs import FILE as PAIRS_FILE

__all__ = ["LOG_FILE", "REFERENCE_FILE", "SUMMARY_FILE", "run"]


def run(ctx) -> dict:
    """Stage 5 of iteration t: the sampler is released (its memory is MLX's now), then DPO on the iteration's pairs
    with reference = M_t; the adapter is saved in mlx-lm's layout and as a GGUF LoRA."""
    from ..training.dpo import train_iteration

    if ctx.config.train.objective == "sft":  # the chosen answers only (training/sft_chosen.py)
        from ..training.sft_chosen import train_iteration
    ctx.release_engine()
    if ctx.config.train.hosts:  # data-parallel over several processes or machines (training/distributed.py)
        from ..training.distributed import launch_iteration

        if ctx.config.train.objective != "dpo":
            raise ValueError("--train-hosts trains the dpo objective only")
        return launch_iteration(ctx.paths.root, ctx.t, ctx.config.train.hosts, say=ctx.hooks.say)
    return train_iteration(ctx.require(PAIRS_FILE, "pairs", PAIRS_FIELDS), ctx.dir, ctx.config.train,
                           base_model=ctx.paths.model,
                           init_adapter=ctx.model.adapter, run_seed=ctx.config.seed, iteration=ctx.t,
                           progress=ctx.hooks.progress, chat_template=ctx.model.chat_template)
