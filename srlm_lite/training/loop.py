"""One LoRA training loop for every objective (DPO, SFT): Adam on the LoRA weights, one log record per step.

Crash safety: every `checkpoint_every` steps (and after the last) the LoRA weights and Adam's state are saved in one
file, atomically (`records.atomic_path`); a run started again on the same plan (same batches in the same order,
same settings: the `fingerprint`) loads it and goes on from the step after it, the log cut back to that step, so it
ends with the weights an uninterrupted run ends with. Numerics: a loss or a gradient that is NaN or infinite stops
training with `TrainingDiverged`; the weights are put back to the last good step and saved.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import TrainingDiverged
from ..hooks import Progress
from ..mlx_runtime import mx, nn, optim, tree_flatten, tree_unflatten
from ..records import StageFile, atomic_path, write_jsonl_atomic
from . import CHECKPOINT_FILE

__all__ = ["CHECKPOINT_FILE", "Objective", "load_checkpoint", "plan_fingerprint", "save_checkpoint", "train_lora"]

# objective(model, batch) -> (loss, {metric name: value}); the gradient is taken of the loss
Objective = Callable[[object, object], tuple[object, dict]]


def train_lora(model, epochs: Sequence[Sequence], objective: Objective, *, learning_rate: float, log_path: Path,
               describe: Callable[[object], dict], stage: str, progress: Progress | None = None,
               checkpoint: Path | None = None, checkpoint_every: int = 0, fingerprint: str = "",
               average_gradients: Callable | None = None) -> list[dict]:
    """Train `model`'s trainable (LoRA) weights on `epochs` (the batches of each epoch, in visiting order).

    Every step's record (`id` step-N, `step`, fractional `epoch`, `loss`, the objective's metrics, `learning_rate`,
    what `describe(batch)` adds, `seconds`) is appended to `log_path` as it is made; the returned list holds them.
    With `checkpoint` (a file) and `checkpoint_every` > 0, training resumes from that file when it was saved for
    the same plan and `fingerprint` (the settings that shape training, given by the caller).
    Data-parallel training passes `average_gradients(loss, metrics, grads) -> (loss, metrics, grads)`: this rank's
    values in, the whole batch's out (see `distributed.py`), before the optimizer step."""
    optimizer = optim.Adam(learning_rate=learning_rate)
    plan = [(epoch, (position + 1) / len(batches), batch)
            for epoch, batches in enumerate(epochs) for position, batch in enumerate(batches)]
    key = plan_fingerprint(epochs, learning_rate, f"{stage}|{fingerprint}") if checkpoint else ""
    start = load_checkpoint(checkpoint, model, optimizer, key) if checkpoint and checkpoint_every > 0 else 0
    log, records = _open_log(log_path, start)
    loss_and_grad = nn.value_and_grad(model, objective)
    for step, (epoch, fraction, batch) in enumerate(plan[start:], start + 1):
        started = time.perf_counter()
        previous = (model.trainable_parameters(), _copy(optimizer.state))
        (loss, metrics), grads = loss_and_grad(model, batch)
        if average_gradients is not None:
            loss, metrics, grads = average_gradients(loss, metrics, grads)
        optimizer.update(model, grads)
        finite = _all_finite(loss, grads)
        mx.eval(model.trainable_parameters(), optimizer.state, loss, metrics, finite)
        if not finite.item():
            _stop(model, optimizer, previous, step, float(loss), stage, learning_rate, checkpoint, key)
        record = {"id": f"step-{step}", "step": step, "epoch": epoch + fraction,
                  "loss": float(loss), **{k: float(v) for k, v in metrics.items()},
                  "learning_rate": learning_rate, **describe(batch),
                  "seconds": round(time.perf_counter() - started, 3)}
        log.append(record)
        records.append(record)
        if checkpoint and checkpoint_every > 0 and (step % checkpoint_every == 0 or step == len(plan)):
            save_checkpoint(checkpoint, model, optimizer, step, key)
        if progress:
            progress(stage, step, len(plan))
    log.complete()
    return records


def _open_log(log_path: Path, start: int) -> tuple[StageFile, list[dict]]:
    """The step log: empty for a fresh start; resumed at `start`, the records of steps 1..start (later ones are
    made again)."""
    log = StageFile(log_path)
    if not start:
        log.reset()
        return log, []
    kept = sorted((r for r in log.resume().values() if r.get("step", 0) <= start), key=lambda r: r["step"])
    if len(kept) != start:  # the log lost steps the checkpoint has: never expected, but then they are not in it
        kept = kept[:start]
    log.path.unlink(missing_ok=True)
    write_jsonl_atomic(log.partial, kept)
    return log, kept


def _copy(tree):
    """A new tree of the same arrays (MLX arrays are immutable; the optimizer replaces entries of its state)."""
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_copy(v) for v in tree)
    return tree


def _all_finite(loss, grads) -> mx.array:
    flags = [mx.all(mx.isfinite(loss))] + [mx.all(mx.isfinite(g)) for _, g in tree_flatten(grads)]
    return mx.all(mx.stack(flags))


def _stop(model, optimizer, previous, step: int, loss: float, stage: str, learning_rate: float,
          checkpoint: Path | None, key: str) -> None:
    """Step `step` went non-finite: back to the weights after step-1, saved where a checkpoint goes; raise."""
    model.update(previous[0])
    optimizer.state = previous[1]
    kept = ""
    if checkpoint:
        save_checkpoint(checkpoint, model, optimizer, step - 1, key)
        kept = f"; the last good weights (after step {step - 1}) are kept in {checkpoint}"
    what = f"the loss is {loss}" if loss != loss or abs(loss) == float("inf") else "a gradient is not finite"
    raise TrainingDiverged(f"{stage}: training diverged at step {step} ({what}){kept}. Lower the learning rate "
                           f"(now {learning_rate:g}) and train again")


def plan_fingerprint(epochs: Sequence[Sequence], learning_rate: float, extra: str = "") -> str:
    """A hash of the batches in visiting order, the learning rate and `extra`: a checkpoint fits this plan only."""
    digest = hashlib.sha256(f"{learning_rate!r}|{extra}".encode())
    for batches in epochs:
        for batch in batches:
            digest.update(repr(batch).encode())
            digest.update(b"\x00")
    return digest.hexdigest()


def save_checkpoint(path: Path, model, optimizer, step: int, fingerprint: str) -> None:
    """The LoRA weights and Adam's state after `step`, in one safetensors file, written atomically."""
    tensors = {f"lora.{k}": v for k, v in tree_flatten(model.trainable_parameters())}
    tensors.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    mx.eval(tensors)
    with atomic_path(path, suffix=".safetensors") as tmp:
        mx.save_safetensors(str(tmp), tensors, metadata={"step": str(step), "fingerprint": fingerprint})


def load_checkpoint(path: Path | None, model, optimizer, fingerprint: str) -> int:
    """Restore the weights and Adam's state of a checkpoint saved for this `fingerprint`; returns its step (0 when
    there is none, it belongs to another plan, or it cannot be read: training then starts over)."""
    if path is None or not Path(path).exists():
        return 0
    try:
        tensors, meta = mx.load(str(path), return_metadata=True)
    except Exception:  # a damaged file is not worth failing for: the steps are made again
        return 0
    lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
    state = [(k[len("optimizer."):], v) for k, v in tensors.items() if k.startswith("optimizer.")]
    if meta.get("fingerprint") != fingerprint or set(lora) != set(dict(tree_flatten(model.trainable_parameters()))):
        return 0
    model.load_weights(list(lora.items()), strict=False)
    optimizer.state = tree_unflatten(state)
    mx.eval(model.trainable_parameters(), optimizer.state)
    return int(meta.get("step", 0))
