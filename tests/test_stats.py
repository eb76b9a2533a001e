"""Evaluation statistics against hand-computed values: accuracy with ties, Wilson, Spearman, Kendall tau-b, rankings."""

import math

import pytest

from srlm_lite.stats import (accuracy, average_ranks, kendall_tau_b, pair_credit, proportion, ranking_metrics,
                             spearman_rho, wilson_interval)


def test_pair_credit_and_accuracy_with_ties():
    assert pair_credit(4.0, 2.0, "a") == 1.0
    assert pair_credit(4.0, 2.0, "b") == 0.0
    assert pair_credit(1.5, 3.0, "b") == 1.0
    assert pair_credit(3.0, 3.0, "a") == 0.5  # a tie counts half
    assert pair_credit(None, 3.0, "b") == 0.5  # no score: no preference expressed
    with pytest.raises(ValueError):
        pair_credit(1.0, 2.0, "c")
    # 3 right, 2 ties, 1 wrong: (3 + 2 x 0.5) / 6
    assert accuracy([1, 1, 1, 0.5, 0.5, 0]) == pytest.approx(4 / 6)
    assert accuracy([]) is None


def test_wilson_interval_hand_computed():
    # 7 of 10, z = 1.959964 (z² = 3.841459): centre 0.7 + 0.192073 = 0.892073,
    # half-width 1.959964 x sqrt(0.021 + 0.0096036) = 0.342874, denominator 1.384146
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.549199 / 1.384146, abs=1e-5) and high == pytest.approx(1.234947 / 1.384146, abs=1e-5)
    # 0 of 10: [0, z²/n / (1 + z²/n)] = [0, 0.277533]
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.277533, abs=1e-5)
    # 10 of 10 mirrors it
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(1 - 0.277533, abs=1e-5) and high == pytest.approx(1.0)
    # ties count half: 5.5 of 11 is p = 0.5, symmetric; half-width 1.959964 x sqrt(0.25/11 + z²/484) / (1 + z²/11)
    low, high = wilson_interval(5.5, 11)
    assert (low + high) / 2 == pytest.approx(0.5) and (high - low) / 2 == pytest.approx(0.343213 / 1.349224, abs=1e-5)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_proportion_block():
    block = proportion([1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    assert block == {"n": 10, "accuracy": 0.7, "ci_low": 0.3968, "ci_high": 0.8922}
    assert proportion([]) == {"n": 0, "accuracy": None, "ci_low": None, "ci_high": None}


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]
    assert average_ranks([3, 1, 2]) == [3, 1, 2]
    assert average_ranks([5, 5, 5]) == [2, 2, 2]


def test_spearman_hand_computed():
    # ranks x [1, 2.5, 2.5, 4], y [1, 3, 2, 4]: sxy 4.5, sxx 4.5, syy 5 -> 4.5 / sqrt(22.5)
    assert spearman_rho([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # no ties: 1 - 6 sum d² / (n (n² - 1)) = 1 - 36 / 24
    assert spearman_rho([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)
    assert spearman_rho([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert spearman_rho([1, 1, 1], [1, 2, 3]) is None  # constant side: undefined


def test_kendall_tau_b_hand_computed():
    # 5 concordant, 0 discordant, 1 pair tied in x only, 6 pairs: 5 / sqrt(5 x 6)
    assert kendall_tau_b([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(5 / math.sqrt(30))
    # 1 concordant, 2 discordant: -1/3
    assert kendall_tau_b([1, 2, 3], [3, 1, 2]) == pytest.approx(-1 / 3)
    # tied in both on one pair (counts in both tie totals): C 2, D 0, n0 3 -> 2 / sqrt(2 x 2)
    assert kendall_tau_b([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)
    assert kendall_tau_b([2, 2], [1, 2]) is None


def test_ranking_metrics_as_in_the_paper():
    groups = [
        ([5.0, 3.0, 4.0], [0, 2, 1]),  # judge agrees completely; its 5 is the human best
        ([2.0, 2.0, 5.0], [0, 1, 2]),  # a tie, two reversals; its 5 is the human worst
    ]
    m = ranking_metrics(groups)
    assert m["instructions"] == 2 and m["pairs"] == 6
    assert m["pairwise_accuracy"] == pytest.approx(round(3.5 / 6, 4))  # 1, 1, 1, 0.5, 0, 0
    assert m["exact_match"] == 0.5
    assert m["five_best"] == 0.5 and m["five_best_n"] == 2
    # group 2: spearman -1.5 / sqrt(3), kendall -2 / sqrt(6)
    assert m["spearman"] == pytest.approx(round((1 - 1.5 / math.sqrt(3)) / 2, 4))
    assert m["kendall_tau"] == pytest.approx(round((1 - 2 / math.sqrt(6)) / 2, 4))


def test_ranking_metrics_edge_cases():
    m = ranking_metrics([([None, 3.0], [1, 0])])  # unscored counts as the lowest: agrees with the human order
    assert m["pairwise_accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["five_best"] is None
    m = ranking_metrics([([3.0, 3.0], [1, 0])])  # constant judge: correlations count 0, the pair half
    assert m["spearman"] == 0.0 and m["kendall_tau"] == 0.0 and m["pairwise_accuracy"] == 0.5
    with pytest.raises(ValueError):
        ranking_metrics([([1.0], [0])])


def test_paired_difference_and_mcnemar_against_hand_computed_values():
    from srlm_lite.stats import consistency, mcnemar, paired_difference

    result = paired_difference([1, 1, 1, 0], [0, 1, 0, 0], resamples=2000, seed=1)
    assert result["difference"] == 0.5 and (result["n_better"], result["n_worse"]) == (2, 0)
    assert 0.0 <= result["ci_low"] <= 0.5 <= result["ci_high"] <= 1.0
    same = paired_difference([0.2] * 5, [0.2] * 5)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0
    # 6 discordant pairs all favouring a: p = 2 * (1/2)^6 = 0.03125; 3 vs 3: p = 1
    assert mcnemar([1] * 6 + [0] * 4, [0] * 6 + [0] * 4) == {"a_only": 6, "b_only": 0, "p_value": 0.0312}
    assert mcnemar([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])["p_value"] == 1.0
    assert consistency([1, 2, 3], [10, 20, 30]) == 1.0 and consistency([1, 2, 3], [3, 2, 1]) == 0.0
    assert consistency([1, 1, 1], [1, 2, 3]) == 0.5


def test_reward_signal_figures_against_hand_computed_values():
    from srlm_lite.rewards.signal import best_random_worst, length_spearman, signal, spread

    groups = [[(3.0, 1.0), (1.0, 0.0), (2.0, 0.5)], [(2.0, 0.0), (2.0, 1.0), (0.0, 0.0)]]
    # prompt 1: best passes 1.0, worst 0.0, random 0.5; prompt 2: best tied (0.0, 1.0) -> 0.5, worst 0.0, random 1/3
    assert best_random_worst(groups) == {"prompts": 2, "best_of_n": 0.75, "random_of_n": 0.4167, "worst_of_n": 0.0}
    assert spread([[1, 1, 1], [1, 3], [None, 2]]) == {"ties": 1, "tie_rate": 0.5, "mean_gap": 1.0}
    assert length_spearman([1, 2, 3, None], [10, 20, 30, 5]) == 1.0
    assert length_spearman([3, 2, 1], [10, 20, 30]) == -1.0
    found = signal([[{"reward": 1.0, "length": 5, "pass": 1.0}, {"reward": 0.0, "length": 9, "pass": 0.0}],
                    [{"reward": 2.0, "length": 7, "pass": None}, {"reward": 2.0, "length": 3, "pass": None}]])
    assert found["ties"] == 1 and found["prompts"] == 1 and found["best_of_n"] == 1.0 and found["worst_of_n"] == 0.0


def test_paired_ifeval_splits_seen_and_unseen_families():
    from srlm_lite.evals.paired import paired_ifeval, paired_judge

    def item(key, ids, loose):
        return {"key": key, "instruction_id_list": ids, "loose": loose, "strict": loose}

    a = [item(1, ["keywords:existence"], [True]), item(2, ["punctuation:no_comma"], [True]),
         item(3, ["keywords:existence", "punctuation:no_comma"], [True, False])]
    b = [item(1, ["keywords:existence"], [False]), item(2, ["punctuation:no_comma"], [True]),
         item(3, ["keywords:existence", "punctuation:no_comma"], [True, True]), item(4, ["x:y"], [True])]
    found = paired_ifeval(a, b, trained_families=["keywords"])
    assert found["all"]["n"] == 3 and found["all"]["a"] == pytest.approx(0.6667) and found["all"]["b"] == pytest.approx(0.6667)
    assert (found["all"]["a_only"], found["all"]["b_only"]) == (1, 1) and found["all"]["difference"] == 0
    assert found["seen"]["n"] == 1 and found["seen"]["difference"] == 1.0  # prompt 1 only
    assert found["unseen"]["n"] == 1 and found["unseen"]["difference"] == 0  # prompt 2 only
    judge = paired_judge([{"index": 0, "credit": 1.0}, {"index": 1, "credit": 0.5}],
                         [{"index": 1, "credit": 0.0}, {"index": 0, "credit": 1.0}])
    assert judge["n"] == 2 and judge["difference"] == 0.25


def test_ifeval_counts_loops_and_the_passes_they_make():
    from srlm_lite.evals.ifeval import degeneracy
    from srlm_lite.evals.paired import NONDEGENERATE, paired_ifeval, paired_ifeval_all

    loop = "no commas here " * 10  # 30 words, 27 4-grams of which 3 distinct: seq-rep-4 = 8/9
    items = [{"key": 1, "response": loop, "loose": [True], "instruction_id_list": ["x:y"]},
             {"key": 2, "response": "a fine short answer with no commas", "loose": [True], "instruction_id_list": ["x:y"]},
             {"key": 3, "response": "another, with a comma", "loose": [False], "instruction_id_list": ["x:y"]}]
    found = degeneracy(items)
    assert found["degenerate"] == pytest.approx(0.3333) and found["prompt_loose_nondegenerate"] == pytest.approx(0.3333)
    assert found["repetition"] == pytest.approx(round((8 / 9) / 3, 4))
    base = [{**item, "response": "plain words only"} for item in items]
    assert paired_ifeval(items, base)["all"]["difference"] == 0  # the loop passes as IFEval counts it...
    assert paired_ifeval(items, base, kind=NONDEGENERATE)["all"]["difference"] == -0.3333  # ...not here
    shown = paired_ifeval_all(items, base)  # what eval paired and iterate --eval show: both
    assert shown["all"]["difference"] == 0 and shown["no_loop"]["difference"] == -0.3333
    assert shown["no_loop"]["a_only"] == 0 and shown["no_loop"]["b_only"] == 1
    assert "no_loop" not in paired_ifeval_all([{k: v for k, v in i.items() if k != "response"} for i in items], base)


def test_paired_generate_compares_the_share_of_candidates_passing_per_prompt():
    from srlm_lite.evals.paired import paired_generate

    def item(key, passes):
        return {"key": key, "candidates": [{"pass": p} for p in passes]}

    a = [item(1, [True, True, False, False]), item(2, [False] * 4), item(3, [True] * 4)]
    b = [item(2, [True, False, False, False]), item(1, [True, False, False, False]), item(9, [True] * 4)]
    found = paired_generate(a, b)  # prompts 1 and 2: a 0.5 and 0, b 0.25 and 0.25
    assert found["n"] == 2 and found["a"] == 0.25 and found["b"] == 0.25 and found["difference"] == 0
    assert (found["n_better"], found["n_worse"]) == (1, 1)
