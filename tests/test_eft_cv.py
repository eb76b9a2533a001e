"""`eft cv`: folds (pure), pooling of held-out judgments, and the whole k-fold run on the real model (marked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from srlm_lite.training.eft_cv import pool, split_folds, training_pairs

PREFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_prefs" / "dev.jsonl"


def test_folds_interleave_cover_everything_once_and_never_train_on_the_held_out():
    pairs = list(range(7))
    folds = split_folds(pairs, 3)
    assert folds == [[0, 3, 6], [1, 4], [2, 5]]
    assert training_pairs(folds, 1) == [0, 3, 6, 2, 5]
    for i, fold in enumerate(folds):
        assert not set(fold) & set(training_pairs(folds, i))
        assert sorted(fold + training_pairs(folds, i)) == pairs
    with pytest.raises(ValueError):
        split_folds(pairs, 1)
    with pytest.raises(ValueError):
        split_folds([1], 2)


def _item(preferred, score_a, score_b, len_a, len_b):
    from srlm_lite.stats import pair_credit

    pick = None if score_a == score_b else ("a" if score_a > score_b else "b")
    return {"index": 0, "preferred": preferred, "len_a": len_a, "len_b": len_b, "score_a": score_a,
            "score_b": score_b, "judge_pick": pick, "credit": pair_credit(score_a, score_b, preferred),
            "verdicts": 2, "parsed": 0, "scored": 2}


def test_pooled_accuracy_counts_every_held_out_pair_once_with_the_length_split():
    fold_0 = [_item("a", 3, 1, 50, 10), _item("b", 3, 1, 50, 10)]  # right (longer preferred), wrong
    fold_1 = [_item("b", 1, 2, 50, 10), _item("a", 2, 2, 10, 50)]  # right (shorter preferred), tie
    pooled = pool([fold_0, fold_1])
    assert pooled["n"] == 4 and pooled["accuracy"] == pytest.approx(2.5 / 4)
    assert pooled["by_length"]["preferred_longer"]["accuracy"] == 1.0
    assert pooled["by_length"]["preferred_shorter"]["accuracy"] == pytest.approx(1.5 / 3)
    assert pooled["longer_wins"]["accuracy"] == pytest.approx(1 / 4)


@pytest.mark.real
@pytest.mark.slow
def test_eft_cv_runs_every_fold_on_the_real_model_and_resumes(tmp_path, real_model_path):
    if not PREFS.exists():
        pytest.skip("../shared/data is not beside the project")
    ift = tmp_path / "ift.jsonl"
    ift.write_text(json.dumps({"instruction": "Name a primary colour.", "output": "Red is a primary colour."}) + "\n")
    out = tmp_path / "cv"
    command = [sys.executable, "-m", "srlm_lite", "eft", "cv", "--pairs", str(PREFS), "--limit", "4", "--folds", "2",
               "--ift", str(ift), "--samples", "2", "--max-tokens", "16", "--epochs", "1", "--out", str(out),
               "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pairs"] == 4 and len(result["per_fold"]) == 2
    assert result["pooled"]["raw_expected"]["n"] == result["pooled"]["m1_expected"]["n"] == 4
    for i, fold in enumerate(result["per_fold"]):
        held_out = [json.loads(line) for line in (out / f"fold_{i}" / "heldout.jsonl").read_text().splitlines()]
        assert len(held_out) == fold["held_out"] == 2 and fold["trained_on"] == 2
        assert (out / f"fold_{i}" / "m1" / "adapter" / "adapter.gguf").exists()
        assert fold["sft"]["by_source"]["ift"] == 1
        eft = [json.loads(line) for line in (out / f"fold_{i}" / "eft.jsonl").read_text().splitlines()]
        trained = {json.loads(line)["instruction"] for line in PREFS.read_text().splitlines()[:4]} - \
            {p["instruction"] for p in held_out}
        assert all(any(t in e["prompt"] for t in trained) for e in eft)  # EFT only from the other fold's pairs
    # a second call finds every step done: same result, nothing retrained
    mtime = (out / "fold_0" / "m1" / "sft_summary.json").stat().st_mtime
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["pooled"] == result["pooled"]
    assert (out / "fold_0" / "m1" / "sft_summary.json").stat().st_mtime == mtime
