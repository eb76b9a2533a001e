"""`srlm-lite eft cv`: does EFT teach the judge? k-fold cross-validation on labelled pairs.

For each fold, EFT examples are built from the other folds' pairs (the raw model's verdicts that agree with the
labels, `eft.build`), an M1 is fine-tuned on IFT + those examples (`sft.run`), and the raw and the fine-tuned judge
are both measured on the held-out fold, which neither EFT nor SFT saw. Pooled over the folds: accuracy with its
interval and the split by whether the preferred answer is the longer one (`judge_eval.summarize`).

Every step writes its files into `fold_<i>/` atomically, its marker last; a rerun skips the steps already done.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import JudgeConfig, SFTConfig, to_dict
from ..engines import open_engine
from ..records import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from ..runs import ADAPTER_DIR, ModelSpec

SUMMARY = "cv_summary.json"
PAIR_FIELDS = ("instruction", "response_a", "response_b", "preferred")


@dataclass
class CVSettings:
    """What `eft cv` does per fold: EFT build settings, the SFT recipe, and the judge modes it measures."""

    folds: int = 2
    eft: JudgeConfig = field(default_factory=lambda: JudgeConfig(mode="forced", judge_samples=3, max_tokens=96))
    balance_scores: bool = False
    balance_lengths: bool = False
    target: str = "verdict"  # what SFT trains each EFT answer to be (`eft.target_text`)
    sft: SFTConfig = field(default_factory=SFTConfig)
    judge_modes: tuple[str, ...] = ("expected",)
    seed: int = 0


def split_folds(pairs: list, k: int) -> list[list]:
    """Fold i holds the pairs at positions i, i+k, i+2k, ... (interleaved, so each fold spans the whole file)."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if len(pairs) < k:
        raise ValueError(f"{len(pairs)} pairs cannot make {k} folds")
    return [pairs[i::k] for i in range(k)]


def training_pairs(folds: list[list], held_out: int) -> list:
    """Every pair outside fold `held_out`."""
    return [pair for i, fold in enumerate(folds) if i != held_out for pair in fold]


def pool(per_fold_items: list[list[dict]]) -> dict:
    """The judge summary over the held-out items of every fold together (each pair judged exactly once)."""
    from ..evals.judge_eval import summarize

    return summarize([item for items in per_fold_items for item in items], "pointwise")


def run(pairs: list[dict], out_dir: Path, settings: CVSettings, *, base_model: Path,
        ift_examples: list[dict] | None = None, say: Callable[[str], None] = lambda m: None,
        progress: Callable[[str, int, int], None] | None = None) -> dict:
    """k-fold EFT: per fold, EFT from the other folds -> M1 (SFT) -> raw and M1 judged on the held-out fold."""
    out_dir = Path(out_dir)
    folds = split_folds(pairs, settings.folds)
    raw = ModelSpec(base_model, None, "raw")
    engines: dict = {}

    def engine(spec):  # one llama.cpp engine per model, opened on first use
        if spec.key not in engines:
            engines.clear()
            engines[spec.key] = open_engine(spec)
        return engines[spec.key]

    per_fold, items = [], {(who, mode): [] for who in ("raw", "m1") for mode in settings.judge_modes}
    for i, held_out in enumerate(folds):
        fold_dir = out_dir / f"fold_{i}"
        write_jsonl_atomic(fold_dir / "heldout.jsonl", [{k: p[k] for k in PAIR_FIELDS} for p in held_out])
        say(f"fold {i + 1}/{len(folds)}: EFT from {len(pairs) - len(held_out)} pairs, judged on {len(held_out)}")
        eft_stats = _eft(fold_dir, training_pairs(folds, i), settings, lambda: engine(raw), progress)
        sft_summary = _sft(fold_dir, ift_examples or [], settings, base_model, progress)
        m1 = ModelSpec(base_model, fold_dir / "m1" / ADAPTER_DIR, f"M1 of fold {i}")
        fold = {"fold": i, "held_out": len(held_out), "trained_on": len(pairs) - len(held_out), "eft": eft_stats,
                "sft": {k: sft_summary[k] for k in ("examples", "by_source", "steps", "loss_start", "loss_end",
                                                     "seconds")}}
        for who, spec in (("raw", raw), ("m1", m1)):
            for mode in settings.judge_modes:
                summary, found = _judge(fold_dir, who, mode, held_out, settings, lambda s=spec: engine(s), progress)
                items[(who, mode)].append(found)
                fold[f"{who}_{mode}"] = _headline(summary)
        per_fold.append(fold)
    result = {"pairs": len(pairs), "folds": settings.folds, "settings": _settings_dict(settings),
              "pooled": {f"{who}_{mode}": pool(found) for (who, mode), found in items.items()},
              "per_fold": per_fold}
    write_json_atomic(out_dir / SUMMARY, result)
    return result


def _eft(fold_dir: Path, train: list[dict], settings: CVSettings, engine, progress) -> dict:
    """EFT examples from the training pairs (`eft.jsonl`, then `eft_stats.json` as the marker)."""
    from . import eft

    marker = fold_dir / "eft_stats.json"
    if marker.exists():
        return read_json(marker)
    examples, stats = eft.build(engine(), train, settings.eft, seed=settings.seed,
                                balance_scores=settings.balance_scores, balance_lengths=settings.balance_lengths,
                                progress=progress)
    write_jsonl_atomic(fold_dir / "eft.jsonl", examples)
    write_json_atomic(marker, stats)
    return stats


def _sft(fold_dir: Path, ift_examples: list[dict], settings: CVSettings, base_model: Path, progress) -> dict:
    """M1 = LoRA SFT on IFT + this fold's EFT examples (`m1/`, its `sft_summary.json` written last)."""
    from . import sft
    from .eft import target_text

    m1_dir = fold_dir / "m1"
    if (m1_dir / "sft_summary.json").exists():
        return read_json(m1_dir / "sft_summary.json")
    shutil.rmtree(m1_dir, ignore_errors=True)  # a run killed mid-training starts this fold's SFT again
    eft_examples = [{"id": f"eft-{n}", "prompt": e["prompt"], "response": target_text(e, settings.target),
                     "source": "eft"}
                    for n, e in enumerate(read_jsonl(fold_dir / "eft.jsonl"))]
    examples = list(ift_examples) + eft_examples
    if not examples:
        raise ValueError(f"{fold_dir}: no IFT examples and no EFT example agreed with the labels: nothing to train")
    return sft.run(examples, m1_dir, settings.sft, base_model=base_model, progress=progress)


def _judge(fold_dir: Path, who: str, mode: str, held_out: list[dict], settings: CVSettings, engine,
           progress) -> tuple[dict, list[dict]]:
    """One judge (raw or M1, in one mode) on the held-out pairs: `judge_<who>_<mode>.json` and its items."""
    from ..evals.judge_eval import evaluate_judge

    summary_file, items_file = fold_dir / f"judge_{who}_{mode}.json", fold_dir / f"judge_{who}_{mode}_items.jsonl"
    if summary_file.exists():
        return read_json(summary_file), read_jsonl(items_file)
    config = dataclasses.replace(JudgeConfig(), mode=mode)
    summary = evaluate_judge(engine(), held_out, mode="pointwise", config=config, seed=settings.seed,
                             progress=progress)
    found = summary.pop("items")
    write_jsonl_atomic(items_file, found)
    write_json_atomic(summary_file, summary)
    return summary, found


def _headline(summary: dict) -> dict:
    return {"accuracy": summary["accuracy"], "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
            "n": summary["n"], "preferred_longer": summary["by_length"]["preferred_longer"]["accuracy"],
            "preferred_shorter": summary["by_length"]["preferred_shorter"]["accuracy"],
            "judge_picks_longer": summary["judge_picks_longer"], "parse_rate": summary["parse_rate"]}


def _settings_dict(settings: CVSettings) -> dict:
    return {"folds": settings.folds, "eft": to_dict(settings.eft), "balance_scores": settings.balance_scores,
            "balance_lengths": settings.balance_lengths, "target": settings.target, "sft": to_dict(settings.sft),
            "judge_modes": list(settings.judge_modes), "seed": settings.seed}
