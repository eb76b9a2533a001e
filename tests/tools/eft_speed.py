"""EFT at scale, measured (the README's "The judge taught at scale"): training speed of the score-digit trainer in
its variants, and the cost of holding the rubric prefix's keys/values constant between refreshes.

    python tests/tools/eft_speed.py speed --eft /work/runs/eft/labels.jsonl --steps 6 [--only sft prefix-8-b16]
    python tests/tools/eft_speed.py approx --eft /work/runs/eft/labels.jsonl --train 256 --heldout 128

`speed`: prompt tokens per second (each prompt counted whole, as if run whole) of today's SFT path (whole prompt +
'Score: X' + EOS, NLL on the response tokens, LoRA on all 30 blocks) and of `eft train`'s options: exact or prefix
cached, LoRA on all or the top blocks, several batch sizes; the first step of each is a warm-up, not counted.
`approx`: the same examples trained exactly (refresh 0) and with the prefix refreshed every R steps, from the same
LoRA initialisation; the held-out loss on the score digit after training and the weights' distance to the exact run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from srlm_lite.config import EFTTrainConfig, TrainConfig
from srlm_lite.mlx_runtime import mx, tree_flatten
from srlm_lite.models.gguf import embedded_model_path
from srlm_lite.seeds import derive_seed
from srlm_lite.training import eft_scale, sft
from srlm_lite.training.loop import train_lora
from srlm_lite.training.policy import open_policy


def policy(lora_layers: int, seed: int = 0):
    return open_policy(embedded_model_path(), None, TrainConfig(lora_layers=lora_layers, dequantize=True),
                       seed=derive_seed(seed, "eft-lora"))


def sft_speed(records: list[dict], batch_size: int, steps: int) -> dict:
    """Today's `srlm-lite sft` step on the same examples (prompt + 'Score: X' + EOS; all blocks; full logits)."""
    model, tokenizer, _ = policy(-1)
    examples = [{"id": str(i), "prompt": r["prompt"], "response": f"Score: {r['score']}"} for i, r in
                enumerate(records)]
    tokenized, _ = sft.tokenize(examples, tokenizer, 1024)
    plan = sft.batches(tokenized, batch_size, 0, 0)[:steps]
    with tempfile.TemporaryDirectory() as tmp:
        log = train_lora(model, [plan], lambda m, b: (sft.batch_loss(m, b, tokenizer.eos_token_id)[0], {}),
                         learning_rate=1e-4, log_path=Path(tmp) / "log.jsonl", stage="sft",
                         describe=lambda b: {"tokens": sum(len(e.tokens) - 2 for e in b)})  # the digit and EOS
    timed = log[1:]
    return {"variant": "sft (today)", "batch_size": batch_size, "steps": len(timed),
            "prompt_tokens_per_second": round(sum(r["tokens"] for r in timed) / sum(r["seconds"] for r in timed), 1)}


def eft_speed(records: list[dict], config: EFTTrainConfig, steps: int) -> dict:
    model, tokenizer, _ = policy(config.lora_layers)
    tokenized, _ = eft_scale.tokenize_examples(records, tokenizer, config.max_length)
    plan = sft.batches(tokenized, config.batch_size, 0, 0)[:steps]
    keep = {e.id for b in plan for e in b}
    with tempfile.TemporaryDirectory() as tmp:
        log, prefix = eft_scale.fit(model, [e for e in tokenized if e.id in keep],
                                    replace(config, epochs=1), eft_scale.digit_ids(tokenizer), Path(tmp) / "log")
    timed = log[1:]
    seconds = sum(r["seconds"] for r in timed) + (prefix.seconds * len(timed) / len(log) if prefix else 0.0)
    return {"variant": f"{'exact' if config.refresh_every == 0 else f'prefix, refresh {config.refresh_every}'}, "
                       f"LoRA {'all' if config.lora_layers < 0 else config.lora_layers} blocks",
            "batch_size": config.batch_size, "steps": len(timed),
            "prompt_tokens_per_second": round(sum(r["tokens"] for r in timed) / seconds, 1),
            "tail_tokens_per_second": round(sum(r["tail_tokens"] for r in timed) / seconds, 1),
            "prefix_tokens": prefix.length if prefix else 0}


_BASE = EFTTrainConfig(batch_size=8)
VARIANTS = {  # name -> the `eft train` settings measured (None: today's `srlm-lite sft` path)
    "sft": None, "exact-all": replace(_BASE, refresh_every=0, lora_layers=-1),
    "exact-8": replace(_BASE, refresh_every=0, lora_layers=8), "prefix-all": replace(_BASE, lora_layers=-1),
    "prefix-8": _BASE, "prefix-4": replace(_BASE, lora_layers=4), "prefix-8-b4": replace(_BASE, batch_size=4),
    "prefix-8-b16": replace(_BASE, batch_size=16), "prefix-8-b32": replace(_BASE, batch_size=32)}


def speed(args) -> None:
    records = eft_scale.load_score_examples(args.eft, args.examples)
    for name in args.only or list(VARIANTS):
        config = VARIANTS[name]
        if config is None:
            say(sft_speed(records, 8, args.steps))
        else:  # about as many examples per variant: fewer steps for bigger batches (at least 2: one is a warm-up)
            say(eft_speed(records, config, max(2, args.steps * 8 // config.batch_size)))


def heldout_loss(model, tokenized, digits) -> float:
    total = 0.0
    for i in range(0, len(tokenized), 16):
        loss, _ = eft_scale.score_loss(model, tokenized[i:i + 16], None, digits)
        total += float(loss) * len(tokenized[i:i + 16])
    return total / len(tokenized)


def approx(args) -> None:
    records = eft_scale.load_score_examples(args.eft, args.train + args.heldout)
    results, weights = [], {}
    for refresh in [0] + args.refresh:
        model, tokenizer, _ = policy(args.lora_layers)
        digits = eft_scale.digit_ids(tokenizer)
        tokenized, _ = eft_scale.tokenize_examples(records, tokenizer, 1024)
        train, held = tokenized[:args.train], tokenized[args.train:]
        config = EFTTrainConfig(refresh_every=refresh, lora_layers=args.lora_layers, epochs=args.epochs,
                                learning_rate=args.learning_rate)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            log, _ = eft_scale.fit(model, train, config, digits, Path(tmp) / "log")
        weights[refresh] = dict(tree_flatten(model.trainable_parameters()))
        row = {"refresh_every": refresh, "steps": len(log), "seconds": round(time.perf_counter() - started, 1),
               "train_loss_last_tenth": round(sum(r["loss"] for r in log[-max(1, len(log) // 10):])
                                              / max(1, len(log) // 10), 4),
               "heldout_loss": round(heldout_loss(model, held, digits), 4)}
        if refresh:
            row["weights_rel_distance_to_exact"] = round(_distance(weights[refresh], weights[0]), 4)
        results.append(row)
        say(row)


def _distance(a: dict, b: dict) -> float:
    num = sum(float(mx.sum((a[k] - b[k]) ** 2)) for k in a)
    den = sum(float(mx.sum(b[k] ** 2)) for k in b)
    return math.sqrt(num / den) if den else float("nan")


def say(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--eft", required=True)
    p.add_argument("--examples", type=int, default=400)
    p.add_argument("--steps", type=int, default=6, help="steps at batch size 8 (scaled for other batch sizes)")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants only (default: all)")
    p = sub.add_parser("approx")
    p.add_argument("--eft", required=True)
    p.add_argument("--train", type=int, default=256)
    p.add_argument("--heldout", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lora-layers", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--refresh", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    speed(args) if args.what == "speed" else approx(args)


if __name__ == "__main__":
    sys.exit(main())
