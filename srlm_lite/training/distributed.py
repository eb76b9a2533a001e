"""Data-parallel DPO over several processes or machines with MLX's distributed runtime, launched by `mlx.launch`.

Each rank trains on its share of every batch; its loss and metrics are weighted by the share's size (so summing
them over the ranks gives the whole batch's means) and the gradients, loss and metrics are summed across the ranks
in one all-reduce per step: every rank then takes the optimizer step one process takes on the whole batch.
Reference log-probs are computed once: each pair by the rank that trains it, on the same shapes it trains them
(so step 1's rewards are exactly zero), then gathered so every rank holds all of them. Only rank 0 writes the run
directory (reference_logps.jsonl, train_log.jsonl, the adapter, train_summary.json); the others log to a scratch
folder. Run: `mlx.launch --hostfile hosts.json --python PY -- -m srlm_lite.training.distributed --run DIR
--iteration T` (what `iterate --train-hosts hosts.json` does for every iteration's train stage)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mlx_runtime import mx, tree_flatten, tree_unflatten
from ..records import write_json_atomic, write_jsonl_atomic
from ..seeds import derive_seed
from . import HELDOUT_REFERENCE_FILE, LOG_FILE, REFERENCE_FILE, SUMMARY_FILE


@dataclass(frozen=True)
class Shard:
    """One rank's share of one batch: its pairs, its weight (share / batch; 0 for a stand-in pair when the batch
    has fewer pairs than there are ranks) and the whole batch's tokens (for the log)."""

    pairs: tuple
    weight: float
    tokens: int


def shard(batch: list, rank: int, size: int) -> Shard:
    """Pairs rank, rank + size, ... of the batch."""
    mine = tuple(batch[rank::size])
    tokens = sum(len(p.chosen) + len(p.rejected) for p in batch)
    if not mine:
        return Shard((batch[0],), 0.0, tokens)
    return Shard(mine, len(mine) / len(batch), tokens)


def weighted(objective):
    """An objective on Shards: the objective of the shard's pairs, loss and metrics scaled by its weight."""

    def on_shard(model, piece: Shard):
        loss, metrics = objective(model, list(piece.pairs))
        return loss * piece.weight, {k: v * piece.weight for k, v in metrics.items()}

    return on_shard


def all_sum_step(group):
    """train_lora's `average_gradients` hook: loss, metrics and gradients summed over the ranks in one all-reduce
    (each already weighted by its share, so the sums are the whole batch's means)."""

    def average(loss, metrics, grads):
        leaves = tree_flatten(grads)
        names = sorted(metrics)
        parts = [loss.reshape(-1)] + [metrics[k].reshape(-1).astype(mx.float32) for k in names]
        parts += [g.reshape(-1) for _, g in leaves]
        total = mx.distributed.all_sum(mx.concatenate(parts), group=group)
        loss = total[0]
        summed = {k: total[1 + i] for i, k in enumerate(names)}
        offset, out = 1 + len(names), []
        for name, g in leaves:
            out.append((name, total[offset:offset + g.size].reshape(g.shape).astype(g.dtype)))
            offset += g.size
        return loss, summed, tree_unflatten(out)

    return average


def shared_reference(model, pairs: list, batch_size: int, pad_id: int, group) -> dict[str, tuple[float, float]]:
    """log pi_ref(chosen), log pi_ref(rejected) of every pair: each computed by the rank that trains it, on its
    shard of the training batch, then summed over the ranks (every other rank contributes zeros)."""
    from .dpo import batch_logps, make_batches

    index = {p.id: i for i, p in enumerate(pairs)}
    table = np.zeros((len(pairs), 2), dtype=np.float32)
    for batch in make_batches(pairs, batch_size):
        piece = shard(batch, group.rank(), group.size())
        if piece.weight == 0:
            continue
        chosen, rejected = batch_logps(model, list(piece.pairs), pad_id)
        for pair, c, r in zip(piece.pairs, chosen.tolist(), rejected.tolist()):
            table[index[pair.id]] = (c, r)
    gathered = np.array(mx.distributed.all_sum(mx.array(table), group=group))
    return {p.id: (float(gathered[i, 0]), float(gathered[i, 1])) for i, p in enumerate(pairs)}


def train_iteration_parallel(pairs: list[dict], out_dir: Path, config, *, base_model: Path, init_adapter: Path | None,
                             run_seed: int, iteration: int, group=None, progress=None,
                             chat_template: str | None = None) -> dict:
    """The train stage (DPO) as `dpo.train_iteration` runs it (the same hold-out split, batches, seeds and
    summary), data-parallel over `group`'s ranks; only rank 0 writes `out_dir`."""
    from .dpo import Objective, holdout_split, tokenize_pairs
    from .policy import open_policy

    group = group or mx.distributed.init()
    started = time.perf_counter()
    model, tokenizer, lora_config = open_policy(base_model, init_adapter, config, chat_template=chat_template,
                                                seed=derive_seed(run_seed, iteration, "lora"))
    tokenized, skipped = tokenize_pairs(pairs, tokenizer, config.max_length)
    if not tokenized:
        raise RuntimeError("no preference pairs to train on (see judgments.jsonl)")
    trained, held = holdout_split(tokenized, config.holdout, derive_seed(run_seed, iteration, "holdout"))
    pad_id, objective = tokenizer.eos_token_id, Objective.from_config(config)
    reference = shared_reference(model, trained, config.batch_size, pad_id, group)
    held_reference = shared_reference(model, held, config.batch_size, pad_id, group) if held else {}
    records = _train(model, trained, reference, config, out_dir, pad_id, objective, group,
                     derive_seed(run_seed, iteration, "train"), progress)
    if group.rank() != 0:
        return {"ranks": group.size(), "steps": len(records), "loss_start": records[0]["loss"]}
    return _finish(model, lora_config, base_model, out_dir, config, (trained, held, skipped),
                   (reference, held_reference), records, objective, pad_id, group.size(), started)


def _train(model, trained: list, reference: dict, config, out_dir: Path, pad_id: int, objective, group, seed: int,
           progress) -> list[dict]:
    """train_lora on this rank's shards, the all-reduce as its `average_gradients`; rank 0 logs to `out_dir`."""
    from .dpo import _batch_loss, dpo_epochs
    from .loop import train_lora

    plan = [[shard(b, group.rank(), group.size()) for b in batches]
            for batches in dpo_epochs(trained, config.batch_size, config.epochs, seed)]
    main = group.rank() == 0
    with tempfile.TemporaryDirectory(prefix="srlm-rank-") as scratch:
        return train_lora(model, plan, weighted(lambda m, b: _batch_loss(m, b, reference, pad_id, objective)),
                          learning_rate=config.learning_rate, log_path=(out_dir if main else Path(scratch)) / LOG_FILE,
                          describe=lambda piece: {"tokens": piece.tokens, "ranks": group.size()}, stage="train",
                          progress=progress if main else None, average_gradients=all_sum_step(group))


def _finish(model, lora_config: dict, base_model: Path, out_dir: Path, config, split: tuple, references: tuple,
            records: list[dict], objective, pad_id: int, ranks: int, started: float) -> dict:
    """Rank 0: the reference log-probs files, the fit and held-out metrics, the adapter, the summary."""
    from .dpo import evaluate, honest_metrics
    from .policy import save_policy

    (trained, held, skipped), (reference, held_reference) = split, references
    for name, pairs, values in ((REFERENCE_FILE, trained, reference), (HELDOUT_REFERENCE_FILE, held, held_reference)):
        if pairs:
            write_jsonl_atomic(out_dir / name, [{"id": p.id, "reference_chosen_logps": values[p.id][0],
                                                 "reference_rejected_logps": values[p.id][1]} for p in pairs])
    end = evaluate(model, trained, reference, config.batch_size * 2, pad_id, objective)
    held_end = evaluate(model, held, held_reference, config.batch_size * 2, pad_id, objective) if held else None
    save_policy(model, out_dir / "adapter", lora_config, base_model)
    summary = {"loss_type": config.loss, "length_normalize": config.length_normalize, "pairs_trained": len(trained),
               "pairs_held_out": len(held), "pairs_skipped": skipped, "ranks": ranks,
               **honest_metrics(records, end, held_end), "adapter": str(out_dir / "adapter"),
               "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def train_run_iteration(run_dir: Path, t: int) -> dict:
    """Iteration t's train stage of a run directory, data-parallel over the ranks `mlx.launch` started (it only
    reads the run; rank 0 writes the stage's files)."""
    from ..records import read_jsonl
    from ..runs import ADAPTER_DIR, base_model, iteration_dir, run_config, start_adapter

    config = run_config(run_dir)
    pairs = read_jsonl(iteration_dir(run_dir, t) / "pairs.jsonl")
    init = iteration_dir(run_dir, t - 1) / ADAPTER_DIR if t > 1 else start_adapter(config)
    return train_iteration_parallel(pairs, iteration_dir(run_dir, t), config.train, base_model=base_model(config),
                                    init_adapter=init, run_seed=config.seed, iteration=t,
                                    chat_template=config.model.chat_template or None)


def launch_command(hosts: str, run_dir: Path, t: int) -> list[str]:
    """`mlx.launch` running iteration t's train stage on `hosts`: an mlx.launch hostfile (JSON; the ssh names and
    ring IPs of the machines) or a comma-separated list of hosts (127.0.0.1,127.0.0.1: two processes here). Every
    host runs this Python, in the run directory's path (a folder shared by the machines, or copied to each)."""
    launcher = Path(sys.executable).with_name("mlx.launch")
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "mlx._distributed_utils.launch"]
    where = ["--hostfile", hosts] if Path(hosts).is_file() else ["--hosts", hosts]
    return command + where + ["--backend", "ring", "--python", sys.executable, "--", "-m",
                              "srlm_lite.training.distributed", "--run", str(Path(run_dir).resolve()),
                              "--iteration", str(t)]


def launch_iteration(run_dir: Path, t: int, hosts: str, say=None) -> dict:
    """Run iteration t's train stage data-parallel under `mlx.launch` (see `launch_command`); its summary."""
    from ..records import read_json
    from ..runs import iteration_dir

    command = launch_command(hosts, run_dir, t)
    if say:
        say(f"iteration {t}: training data-parallel on {hosts} (mlx.launch)")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"data-parallel training failed (mlx.launch exit {done.returncode}): "
                           f"{(done.stderr or done.stdout)[-2000:]}")
    return read_json(iteration_dir(run_dir, t) / SUMMARY_FILE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="data-parallel train stage of one iteration (under mlx.launch)")
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--iteration", required=True, type=int)
    args = parser.parse_args(argv)
    summary = train_run_iteration(args.run, args.iteration)
    print(f"rank {mx.distributed.init().rank()}: {summary['steps']} steps, loss {summary['loss_start']:.4f} -> "
          f"{summary.get('loss_end', float('nan')):.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
