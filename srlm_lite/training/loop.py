"""One LoRA training loop for every objective (DPO, SFT): Adam on the LoRA weights, one log record per step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from ..hooks import Progress
from ..mlx_runtime import mx, nn, optim
from ..records import StageFile

# objective(model, batch) -> (loss, {metric name: value}); the gradient is taken of the loss
Objective = Callable[[object, object], tuple[object, dict]]


def train_lora(model, epochs: Sequence[Sequence], objective: Objective, *, learning_rate: float, log_path: Path,
               describe: Callable[[object], dict], stage: str, progress: Progress | None = None) -> list[dict]:
    """Train `model`'s trainable (LoRA) weights on `epochs` (the batches of each epoch, in visiting order).

    Every step's record (`id` step-N, `step`, fractional `epoch`, `loss`, the objective's metrics, `learning_rate`,
    what `describe(batch)` adds, `seconds`) is appended to `log_path` as it is made; the returned list holds them."""
    log = StageFile(log_path)
    log.reset()
    optimizer = optim.Adam(learning_rate=learning_rate)
    loss_and_grad = nn.value_and_grad(model, objective)
    total = sum(len(batches) for batches in epochs)
    step, records = 0, []
    for epoch, batches in enumerate(epochs):
        for position, batch in enumerate(batches):
            started = time.perf_counter()
            (loss, metrics), grads = loss_and_grad(model, batch)
            optimizer.update(model, grads)
            mx.eval(model.trainable_parameters(), optimizer.state, loss, metrics)
            step += 1
            record = {"id": f"step-{step}", "step": step, "epoch": epoch + (position + 1) / len(batches),
                      "loss": float(loss), **{k: float(v) for k, v in metrics.items()},
                      "learning_rate": learning_rate, **describe(batch),
                      "seconds": round(time.perf_counter() - started, 3)}
            log.append(record)
            records.append(record)
            if progress:
                progress(stage, step, total)
    log.complete()
    return records
