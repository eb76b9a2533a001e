"""DPO on an iteration's pairs: train M_{t+1} from M_t with a LoRA in MLX; reference = M_t, its log-probs cached."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig
from ..hooks import Progress
from ..mlx_runtime import mx
from ..models.tokenizer import ChatTokenizer
from ..records import StageFile, write_json_atomic
from ..runs import ADAPTER_DIR
from ..seeds import derive_seed
from . import CHECKPOINT_FILE, HELDOUT_REFERENCE_FILE, LOG_FILE, REFERENCE_FILE, SUMMARY_FILE
from .logps import sequence_logps
from .loop import train_lora
from .losses import dpo_loss



@dataclass(frozen=True)
class TokenizedPair:
    id: str
    chosen: list[int]
    rejected: list[int]
    chosen_prompt_len: int
    rejected_prompt_len: int
    label_smoothing: float | None = None  # 1 - C, CREAM's consistency weight (--consistency); None: plain DPO

    @property
    def length(self) -> int:
        return max(len(self.chosen), len(self.rejected))

    @property
    def chosen_tokens(self) -> int:
        return len(self.chosen) - self.chosen_prompt_len

    @property
    def rejected_tokens(self) -> int:
        return len(self.rejected) - self.rejected_prompt_len

    @property
    def response_tokens(self) -> int:
        return self.chosen_tokens + self.rejected_tokens


def tokenize_pairs(pairs: list[dict], tokenizer: ChatTokenizer, max_length: int) -> tuple[list[TokenizedPair], int]:
    """Token ids of prompt+chosen and prompt+rejected, exactly as sampled (same template and vocabulary).

    Responses are cut at `max_length`; a pair whose prompt leaves fewer than 8 response tokens is skipped.
    Returns the pairs and how many were skipped.
    """
    out, skipped = [], 0
    for pair in pairs:
        chosen, c_len = tokenizer.sequence(pair["prompt"], pair["chosen"], pair.get("chosen_finished", True))
        rejected, r_len = tokenizer.sequence(pair["prompt"], pair["rejected"], pair.get("rejected_finished", True))
        if max(c_len, r_len) > max_length - 8:
            skipped += 1
            continue
        out.append(TokenizedPair(pair["id"], chosen[:max_length], rejected[:max_length], c_len, r_len,
                                 pair.get("label_smoothing")))
    return out, skipped


def make_batches(pairs: list[TokenizedPair], batch_size: int) -> list[list[TokenizedPair]]:
    """Length-bucketed batches: pairs sorted by length, so padding within a batch stays small."""
    ordered = sorted(pairs, key=lambda p: p.length)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def collate(batch: list[TokenizedPair], pad_id: int) -> tuple[mx.array, mx.array, mx.array]:
    """Rows: the batch's chosen sequences, then its rejected ones, right-padded."""
    rows = [p.chosen for p in batch] + [p.rejected for p in batch]
    prompt_lens = [p.chosen_prompt_len for p in batch] + [p.rejected_prompt_len for p in batch]
    width = max(len(r) for r in rows)
    padded = [r + [pad_id] * (width - len(r)) for r in rows]
    return mx.array(padded, dtype=mx.int32), mx.array(prompt_lens), mx.array([len(r) for r in rows])


def batch_logps(model, batch: list[TokenizedPair], pad_id: int) -> tuple[mx.array, mx.array]:
    tokens, prompt_lens, lengths = collate(batch, pad_id)
    logps = sequence_logps(model, tokens, prompt_lens, lengths)
    return logps[: len(batch)], logps[len(batch) :]


def holdout_split(pairs: list, share: float, seed: int) -> tuple[list, list]:
    """(trained, held out): `share` of the pairs (none below 5 pairs) chosen by a seeded hash of their ids, each
    list in the original order (TRL's eval split: the held-out pairs measure what training generalises)."""
    k = int(round(share * len(pairs))) if len(pairs) >= 5 else 0
    held = {p.id for p in sorted(pairs, key=lambda p: derive_seed(seed, p.id))[:k]}
    return [p for p in pairs if p.id not in held], [p for p in pairs if p.id in held]


def reference_logps(model, pairs: list[TokenizedPair], out_dir: Path, batch_size: int, pad_id: int,
                    progress=None, file: str = REFERENCE_FILE) -> dict[str, tuple[float, float]]:
    """log pi_ref(chosen), log pi_ref(rejected) per pair, computed once with M_t and stored beside the pairs."""
    stage = StageFile(out_dir / file)
    done = stage.resume()
    todo = [p for p in pairs if p.id not in done]
    for index, batch in enumerate(make_batches(todo, batch_size)):
        chosen, rejected = batch_logps(model, batch, pad_id)
        mx.eval(chosen, rejected)
        for pair, c, r in zip(batch, chosen.tolist(), rejected.tolist()):
            stage.append({"id": pair.id, "reference_chosen_logps": c, "reference_rejected_logps": r})
        if progress:
            progress("reference", min((index + 1) * batch_size, len(todo)), len(todo))
    records = stage.complete([p.id for p in pairs])
    return {r["id"]: (r["reference_chosen_logps"], r["reference_rejected_logps"]) for r in records}


def evaluate(model, pairs, reference, batch_size: int, pad_id: int, objective: Objective) -> dict:
    """DPO loss and TRL metrics of the current policy over all pairs (no gradient)."""
    totals: dict[str, float] = {}
    for batch in make_batches(pairs, batch_size):
        loss, metrics = _batch_loss(model, batch, reference, pad_id, objective)
        for key, value in {"loss": loss, **metrics}.items():
            totals[key] = totals.get(key, 0.0) + float(value) * len(batch)
    return {key: value / len(pairs) for key, value in totals.items()}


@dataclass(frozen=True)
class Objective:
    """Which preference loss and how log-probs enter it (TrainConfig's `loss`, `beta`, `length_normalize`, ...)."""

    beta: float = 0.1
    loss_type: str = "sigmoid"
    length_normalize: bool = False
    rpo_alpha: float = 1.0

    @classmethod
    def from_config(cls, config: TrainConfig) -> "Objective":
        return cls(config.beta, config.loss, config.length_normalize, config.rpo_alpha)


def _batch_loss(model, batch, reference, pad_id, objective: Objective):
    """The objective on one batch; with `length_normalize`, every log-prob (policy and reference) is per token."""
    chosen, rejected = batch_logps(model, batch, pad_id)
    ref_c = mx.array([reference[p.id][0] for p in batch])
    ref_r = mx.array([reference[p.id][1] for p in batch])
    n_c = mx.array([p.chosen_tokens for p in batch])
    n_r = mx.array([p.rejected_tokens for p in batch])
    if objective.length_normalize:
        chosen, ref_c = chosen / n_c, ref_c / n_c
        rejected, ref_r = rejected / n_r, ref_r / n_r
        n_c = mx.ones_like(n_c)  # the RPO term is then already per token
    smoothing = None
    if any(p.label_smoothing is not None for p in batch):
        smoothing = mx.array([p.label_smoothing or 0.0 for p in batch])
    return dpo_loss(chosen, rejected, ref_c, ref_r, objective.beta, loss_type=objective.loss_type,
                    chosen_lengths=n_c, rpo_alpha=objective.rpo_alpha, label_smoothing=smoothing)


def dpo_epochs(pairs: list[TokenizedPair], batch_size: int, epochs: int, seed: int) -> list[list]:
    """The batches of each epoch in visiting order: length-bucketed batches, shuffled by a seed per epoch."""
    batches = make_batches(pairs, batch_size)
    plan = []
    for epoch in range(epochs):
        order = list(range(len(batches)))
        random.Random(derive_seed(seed, "epoch", epoch)).shuffle(order)
        plan.append([batches[index] for index in order])
    return plan


def train_dpo(model, pairs: list[TokenizedPair], reference: dict, config: TrainConfig, out_dir: Path, *,
              pad_id: int, seed: int, progress: Progress | None = None) -> list[dict]:
    """DPO with the shared LoRA loop: one log record per step (TRL metric names) in train_log.jsonl."""
    objective = Objective.from_config(config)
    return train_lora(model, dpo_epochs(pairs, config.batch_size, config.epochs, seed),
                      lambda m, batch: _batch_loss(m, batch, reference, pad_id, objective),
                      learning_rate=config.learning_rate, log_path=out_dir / LOG_FILE,
                      describe=lambda batch: {"tokens": sum(len(p.chosen) + len(p.rejected) for p in batch)},
                      stage="train", progress=progress, checkpoint=out_dir / CHECKPOINT_FILE,
                      checkpoint_every=config.checkpoint_every, fingerprint=repr(config))


def train_iteration(pairs: list[dict], out_dir: Path, config: TrainConfig, *, base_model: Path,
                    init_adapter: Path | None, run_seed: int, iteration: int, progress: Progress | None = None,
                    chat_template: str | None = None) -> dict:
    """Stage 5 end to end: policy = M_t (base + previous adapter), reference log-probs, DPO, save, export GGUF."""
    from .policy import open_policy, save_policy

    started = time.perf_counter()
    adapter_dir = out_dir / ADAPTER_DIR
    model, tokenizer, lora_config = open_policy(base_model, init_adapter, config, chat_template=chat_template,
                                                seed=derive_seed(run_seed, iteration, "lora"))
    tokenized, skipped = tokenize_pairs(pairs, tokenizer, config.max_length)
    if not tokenized:
        raise RuntimeError("no preference pairs to train on: the judge gave every candidate of every prompt the "
                           "same score, or none could be scored (see judgments.jsonl)")
    pad_id = tokenizer.eos_token_id
    trained, held = holdout_split(tokenized, config.holdout, derive_seed(run_seed, iteration, "holdout"))
    # the training batches exactly: at step 1 the policy's log-probs then equal the reference's bit for bit (rewards
    # 0, accuracy 0), where other batch shapes would leave BLAS rounding noise that reads as reward accuracy
    reference = reference_logps(model, trained, out_dir, config.batch_size, pad_id, progress)
    held_reference = (reference_logps(model, held, out_dir, config.batch_size, pad_id, file=HELDOUT_REFERENCE_FILE)
                      if held else {})
    records = train_dpo(model, trained, reference, config, out_dir, pad_id=pad_id,
                        seed=derive_seed(run_seed, iteration, "train"), progress=progress)
    objective = Objective.from_config(config)
    end = evaluate(model, trained, reference, config.batch_size * 2, pad_id, objective)
    held_end = evaluate(model, held, held_reference, config.batch_size * 2, pad_id, objective) if held else None
    save_policy(model, adapter_dir, lora_config, base_model)
    summary = {"loss_type": config.loss, "length_normalize": config.length_normalize,
               "pairs_trained": len(trained), "pairs_held_out": len(held), "pairs_skipped": skipped,
               **honest_metrics(records, end, held_end),
               "adapter": str(adapter_dir), "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def honest_metrics(records: list[dict], fit: dict, held_out: dict | None) -> dict:
    """What training did, each figure named for what it measures: `loss_start`/`accuracy_start` at step 1;
    `online_loss`/`online_accuracy`, the mean over the first epoch's steps, each measured on a batch before the model
    trained on it; `loss_end`/`accuracy_end`, the fit on the trained pairs after training; `eval_loss`/
    `eval_accuracy`, pairs held out of training (None without any)."""
    first = [r for r in records if r["epoch"] <= 1.0] or records
    seconds = sum(r["seconds"] for r in records)
    return {
        "steps": len(records),
        "loss_start": records[0]["loss"], "accuracy_start": records[0]["rewards/accuracies"],
        "online_loss": round(sum(r["loss"] for r in first) / len(first), 6),
        "online_accuracy": round(sum(r["rewards/accuracies"] for r in first) / len(first), 4),
        "loss_end": fit["loss"], "accuracy_end": fit["rewards/accuracies"], "margin_end": fit["rewards/margins"],
        "end_metrics": fit,
        "eval_loss": held_out["loss"] if held_out else None,
        "eval_accuracy": held_out["rewards/accuracies"] if held_out else None,
        "eval_margin": held_out["rewards/margins"] if held_out else None,
        "tokens_per_second": round(sum(r.get("tokens", 0) for r in records) / seconds, 1) if seconds else None,
    }
