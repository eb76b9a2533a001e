"""`--objective sft`: LoRA fine-tuning on each pair's chosen answer only, the paper's SFT baseline on its own data.

The same pairs as DPO (tokenized and cut exactly as `dpo.tokenize_pairs` does, the same ones held out), the same
length-bucketed batches in the same seeded order, the same steps, learning rate and LoRA initialisation: only the
objective differs. The loss is the token-level NLL of the chosen answers; the rejected answers are never trained on.
The reference log-probs (M_t) are still computed, so that the end of training reports DPO's metrics
(`rewards/chosen`, `rewards/rejected`, ..., on the trained and on the held-out pairs) for the SFT-trained model too:
whether it moved toward the chosen answer *and away from the rejected one*.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..config import TrainConfig
from ..hooks import Progress
from ..mlx_runtime import mx
from ..records import write_json_atomic
from ..runs import ADAPTER_DIR
from ..seeds import derive_seed
from . import CHECKPOINT_FILE, HELDOUT_REFERENCE_FILE, LOG_FILE, SUMMARY_FILE
from .dpo import (Objective, TokenizedPair, dpo_epochs, evaluate, holdout_split, reference_logps,
                  tokenize_pairs)
from .logps import sequence_logps
from .loop import train_lora


def chosen_rows(batch: list[TokenizedPair], pad_id: int) -> tuple[mx.array, mx.array, mx.array]:
    """The batch's chosen sequences only, right-padded: (tokens, prompt lengths, lengths)."""
    width = max(len(p.chosen) for p in batch)
    tokens = mx.array([p.chosen + [pad_id] * (width - len(p.chosen)) for p in batch], dtype=mx.int32)
    return tokens, mx.array([p.chosen_prompt_len for p in batch]), mx.array([len(p.chosen) for p in batch])


def sft_loss(model, batch: list[TokenizedPair], pad_id: int):
    """Token-level mean NLL of the chosen answers (prompt and padding masked) and `logps/chosen` (summed, mean)."""
    logps = sequence_logps(model, *chosen_rows(batch, pad_id))
    tokens = sum(p.chosen_tokens for p in batch)
    loss = -logps.sum() / max(tokens, 1)
    return loss, {"logps/chosen": mx.stop_gradient(logps).mean()}


def train_sft(model, pairs: list[TokenizedPair], config: TrainConfig, out_dir: Path, *, pad_id: int, seed: int,
              progress: Progress | None = None) -> list[dict]:
    """SFT on the chosen answers with the shared LoRA loop, over DPO's batches (`dpo_epochs`, same seed)."""
    return train_lora(model, dpo_epochs(pairs, config.batch_size, config.epochs, seed),
                      lambda m, batch: sft_loss(m, batch, pad_id),
                      learning_rate=config.learning_rate, log_path=out_dir / LOG_FILE,
                      describe=lambda batch: {"tokens": sum(len(p.chosen) for p in batch),
                                              "response_tokens": sum(p.chosen_tokens for p in batch)},
                      stage="train", progress=progress, checkpoint=out_dir / CHECKPOINT_FILE,
                      checkpoint_every=config.checkpoint_every, fingerprint=f"sft|{config!r}")


def mean_nll(model, pairs: list[TokenizedPair], batch_size: int, pad_id: int) -> float:
    """Token-level NLL of all chosen answers under `model` (no gradient)."""
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        logps = sequence_logps(model, *chosen_rows(batch, pad_id))
        total -= float(logps.sum())
        count += sum(p.chosen_tokens for p in batch)
    return total / max(count, 1)


def train_iteration(pairs: list[dict], out_dir: Path, config: TrainConfig, *, base_model: Path,
                    init_adapter: Path | None, run_seed: int, iteration: int, progress: Progress | None = None,
                    chat_template: str | None = None) -> dict:
    """Stage 5 with the SFT objective: policy = M_t, DPO's split of the pairs (the same pairs held out), reference
    log-probs (for the metrics only), SFT on the trained pairs' chosen answers, DPO's metrics at the end on the
    trained and the held-out pairs, save (and export for llama.cpp). The summary has the keys DPO's has."""
    from .policy import open_policy, save_policy

    started = time.perf_counter()
    # the same LoRA initialisation as the DPO arm
    model, tokenizer, lora_config = open_policy(base_model, init_adapter, config, chat_template=chat_template,
                                                seed=derive_seed(run_seed, iteration, "lora"))
    tokenized, skipped = tokenize_pairs(pairs, tokenizer, config.max_length)
    if not tokenized:
        raise RuntimeError("no preference pairs to take chosen answers from (see judgments.jsonl)")
    pad_id = tokenizer.eos_token_id
    trained, held = holdout_split(tokenized, config.holdout, derive_seed(run_seed, iteration, "holdout"))
    reference = reference_logps(model, trained, out_dir, config.batch_size, pad_id, progress)
    held_reference = (reference_logps(model, held, out_dir, config.batch_size, pad_id, file=HELDOUT_REFERENCE_FILE)
                      if held else {})
    nll_start = mean_nll(model, trained, config.batch_size * 2, pad_id)
    records = train_sft(model, trained, config, out_dir, pad_id=pad_id,
                        seed=derive_seed(run_seed, iteration, "train"), progress=progress)
    objective = Objective.from_config(config)
    end = evaluate(model, trained, reference, config.batch_size * 2, pad_id, objective)
    held_end = evaluate(model, held, held_reference, config.batch_size * 2, pad_id, objective) if held else None
    nll = (nll_start, mean_nll(model, trained, config.batch_size * 2, pad_id))
    save_policy(model, out_dir / ADAPTER_DIR, lora_config, base_model)
    summary = {"objective": "sft", "loss_type": "sft", "length_normalize": False, "pairs_trained": len(trained),
               "pairs_held_out": len(held), "pairs_skipped": skipped, **_metrics(records, end, held_end, nll),
               "adapter": str(out_dir / ADAPTER_DIR), "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def _metrics(records: list[dict], end: dict, held_end: dict | None, nll: tuple[float, float]) -> dict:
    """DPO's summary keys for the SFT-trained policy against M_t (its DPO loss and reward accuracy: ln 2 and 0 at the
    start, where policy = reference; at the end on the trained pairs and, `eval_`, on the held-out ones) and SFT's
    own NLL on the trained chosen answers before and after."""
    seconds = sum(r["seconds"] for r in records)
    return {
        "steps": len(records), "loss_start": math.log(2), "accuracy_start": 0.0,
        "loss_end": end["loss"], "accuracy_end": end["rewards/accuracies"], "margin_end": end["rewards/margins"],
        "end_metrics": end,
        "eval_loss": held_end["loss"] if held_end else None,
        "eval_accuracy": held_end["rewards/accuracies"] if held_end else None,
        "eval_margin": held_end["rewards/margins"] if held_end else None,
        "eval_metrics": held_end,
        "nll_start": round(nll[0], 4), "nll_end": round(nll[1], 4),
        "tokens_per_second": round(sum(r["tokens"] for r in records) / seconds, 1) if seconds else None,
    }
