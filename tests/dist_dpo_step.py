"""Run by tests/test_distributed.py: a few DPO steps of a tiny random llama with a LoRA, either in one process
(`--single`) or data-parallel over the ranks `mlx.launch` started; rank 0 writes the step log and the LoRA weights
to OUT (losses.json, lora.safetensors) for the test to compare."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from srlm_lite.mlx_runtime import mx, tree_flatten
from srlm_lite.training.distributed import all_sum_step, shard, shared_reference, weighted
from srlm_lite.training.dpo import Objective, TokenizedPair, _batch_loss, batch_logps, dpo_epochs, make_batches
from srlm_lite.training.lora import attach_lora
from srlm_lite.training.loop import train_lora

BATCH_SIZE = 3  # 7 pairs: batches of 3, 3 and 1 (rank 1 gets 1 pair, 1 pair, and a weight-0 stand-in)
PAD = 0


def tiny_model():
    from mlx_lm.models.llama import Model, ModelArgs

    mx.random.seed(0)
    model = Model(ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=128,
                            rope_traditional=True, tie_word_embeddings=True))
    model.set_dtype(mx.float32)
    model.freeze()
    mx.random.seed(1)
    attach_lora(model, rank=4, scale=2.0)
    return model


def tiny_pairs(n: int = 7) -> list[TokenizedPair]:
    rng = random.Random(0)
    pairs = []
    for i in range(n):
        prompt = [rng.randrange(1, 128) for _ in range(rng.randint(4, 9))]
        chosen = prompt + [rng.randrange(1, 128) for _ in range(rng.randint(3, 12))]
        rejected = prompt + [rng.randrange(1, 128) for _ in range(rng.randint(3, 12))]
        pairs.append(TokenizedPair(f"pair-{i}", chosen, rejected, len(prompt), len(prompt)))
    return pairs


def single_reference(model, pairs):
    reference = {}
    for batch in make_batches(pairs, BATCH_SIZE):
        chosen, rejected = batch_logps(model, batch, PAD)
        for pair, c, r in zip(batch, chosen.tolist(), rejected.tolist()):
            reference[pair.id] = (c, r)
    return reference


def main(out: Path, parallel: bool) -> None:
    model, pairs, objective = tiny_model(), tiny_pairs(), Objective(beta=0.1)
    group = mx.distributed.init()
    plan = dpo_epochs(pairs, BATCH_SIZE, 1, seed=5)
    extra = {}
    if parallel:
        reference = shared_reference(model, pairs, BATCH_SIZE, PAD, group)
        plan = [[shard(b, group.rank(), group.size()) for b in batches] for batches in plan]
        loss = weighted(lambda m, b: _batch_loss(m, b, reference, PAD, objective))
        extra = {"average_gradients": all_sum_step(group)}
    else:
        reference = single_reference(model, pairs)
        loss = lambda m, b: _batch_loss(m, b, reference, PAD, objective)  # noqa: E731
    log = out / f"log-rank{group.rank()}"
    records = train_lora(model, plan, loss, learning_rate=1e-2, log_path=log / "train_log.jsonl",
                         describe=lambda b: {}, stage="train", **extra)
    if group.rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "losses.json").write_text(json.dumps({"ranks": group.size(), "records": records,
                                                     "reference": reference}))
        mx.save_safetensors(str(out / "lora.safetensors"), dict(tree_flatten(model.trainable_parameters())))


if __name__ == "__main__":
    main(Path(sys.argv[-1]), parallel="--single" not in sys.argv)
