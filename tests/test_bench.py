"""`srlm-lite bench`: the ratio convention (pure), and the quick bench as a smoke test on the real model."""

import json
import subprocess
import sys

import pytest

from srlm_lite.tools.bench import _agreement, _pairs_from_samples, _vm_hwm_kb, figure, figure_line, judge_items_from_pairs


def test_ratio_above_one_means_ours_is_better_both_ways():
    assert figure("x", "tokens/s", 300.0, 100.0, higher_is_better=True)["ratio"] == 3.0
    assert figure("x", "s", 0.5, 2.0, higher_is_better=False)["ratio"] == 4.0
    assert figure("x", "s", 2.0, 0.5, higher_is_better=False)["ratio"] == 0.25
    assert figure("x", "s", 1.0, None, higher_is_better=False)["ratio"] is None


def test_figure_line_says_ours_baseline_and_ratio_or_why_there_is_none():
    row = figure("sampling", "tokens/s", 300.0, 100.0, higher_is_better=True)
    assert figure_line(row) == "sampling: 300.0 vs 100.0 tokens/s, ratio 3.0x"
    skipped = figure("training_torch", "tokens/s", 60.0, None, higher_is_better=True, skipped="torch not installed")
    assert figure_line(skipped) == "training_torch: 60.0 tokens/s (torch not installed)"


def test_peak_memory_is_read_from_vm_hwm_and_zero_once_the_process_is_gone(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9000 kB\nVmHWM:\t  2974 kB\nVmRSS:\t 1000 kB\n")
    assert _vm_hwm_kb(status) == 2974
    assert _vm_hwm_kb(tmp_path / "gone") == 0


def test_judge_items_carry_their_labels_and_agreement_counts_ties_half():
    pairs = [{"index": 0, "instruction": "q0", "response_a": "a0", "response_b": "b0", "preferred": "a"},
             {"index": 1, "instruction": "q1", "response_a": "a1", "response_b": "b1", "preferred": "b"}]
    items = judge_items_from_pairs(pairs)
    assert [(i["pair"], i["side"], i["response"]) for i in items] == [(0, "a", "a0"), (0, "b", "b0"),
                                                                     (1, "a", "a1"), (1, "b", "b1")]
    # pair 0 right (4 > 2), pair 1 a tie (3 == 3): accuracy 0.75
    assert _agreement(items, [4.0, 2.0, 3.0, 3.0])["accuracy"] == 0.75
    assert _agreement([{"instruction": "q", "response": "r"}], [1.0]) is None


def test_pairs_from_samples_pair_neighbours():
    pairs = _pairs_from_samples([("p", ["a", "b", "c", "d"])])
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a", "b"), ("c", "d")]


@pytest.mark.real
@pytest.mark.slow
def test_quick_bench_runs_and_prints_valid_json(real_model_path):
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "bench", "--quick", "--json"], capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    names = {f["name"] for f in result["figures"]}
    assert {"sampling", "judging_forced", "judging_expected", "training", "blas", "iteration"} <= names
    for f in result["figures"]:
        assert {"name", "unit", "ours", "baseline", "ratio"} <= f.keys()
    assert result["machine"]["cpus"] >= 1
