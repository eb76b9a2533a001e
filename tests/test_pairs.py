"""Pair selection: best vs worst mean score, ties dropped, unscored candidates never the rejected one."""

from srlm_lite.stages.pairs import Candidate, build_pairs, select_pair


def c(i, score):
    return Candidate(id=f"r{i}", text=f"answer {i}", score=score)


def test_highest_vs_lowest():
    pair, reason = select_pair([c(0, 3.0), c(1, 4.5), c(2, 1.0), c(3, 2.0)])
    assert reason == "ok" and pair.chosen.id == "r1" and pair.rejected.id == "r2"


def test_all_equal_is_a_tie_and_gives_no_pair():
    pair, reason = select_pair([c(0, 3.0), c(1, 3.0), c(2, 3.0)])
    assert pair is None and reason == "tie"


def test_unscored_is_dropped_not_treated_as_minimum():
    pair, reason = select_pair([c(0, None), c(1, 4.0), c(2, 2.0), c(3, None)])
    assert pair.rejected.id == "r2" and pair.chosen.id == "r1"
    pair, reason = select_pair([c(0, None), c(1, 4.0), c(2, None)])
    assert pair is None and reason == "too_few_scored"


def test_min_gap():
    pair, reason = select_pair([c(0, 3.0), c(1, 3.4)], min_gap=0.5)
    assert pair is None and reason == "gap_below_min"
    pair, _ = select_pair([c(0, 3.0), c(1, 3.6)], min_gap=0.5)
    assert pair.chosen.id == "r1"


def test_build_pairs_records_are_trl_shaped():
    responses = [
        {"id": f"p1-r{k}", "prompt_id": "p1", "prompt": "Q1", "response": f"a{k}", "finish_reason": "stop"}
        for k in range(3)
    ] + [{"id": f"p2-r{k}", "prompt_id": "p2", "prompt": "Q2", "response": f"b{k}", "finish_reason": "length"}
         for k in range(2)]
    judgments = [{"id": "p1-r0", "score": 2.0}, {"id": "p1-r1", "score": 4.0}, {"id": "p1-r2", "score": None},
                 {"id": "p2-r0", "score": 3.0}, {"id": "p2-r1", "score": 3.0}]
    records, outcomes = build_pairs(responses, judgments)
    assert outcomes == {"ok": 1, "tie": 1}
    (record,) = records
    assert {k: record[k] for k in ("id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected")} == {
        "id": "p1", "prompt": "Q1", "chosen": "a1", "rejected": "a0", "score_chosen": 4.0, "score_rejected": 2.0}
    assert record["chosen_id"] == "p1-r1" and record["rejected_id"] == "p1-r0"


def t(i, score, text):
    return Candidate(id=f"r{i}", text=text, score=score)


def test_length_tie_break_prefers_shorter_best_and_longer_worst():
    cands = [t(0, 4.0, "x" * 300), t(1, 3.9, "x" * 50), t(2, 1.0, "x" * 40), t(3, 1.2, "x" * 400)]
    pair, _ = select_pair(cands)
    assert (pair.chosen.id, pair.rejected.id) == ("r0", "r2")  # plain: top and bottom scores
    pair, reason = select_pair(cands, length_tolerance=0.25)
    assert reason == "ok" and (pair.chosen.id, pair.rejected.id) == ("r1", "r3")
    pair, _ = select_pair(cands, length_tolerance=0.05)  # 3.9 and 1.2 are no longer near-equal
    assert (pair.chosen.id, pair.rejected.id) == ("r0", "r2")


def test_length_tie_break_never_pairs_a_lower_chosen():
    # every answer within the tolerance of both ends: the shortest (2.0) would be chosen over the longest (2.1)
    pair, reason = select_pair([t(0, 2.0, "ab"), t(1, 2.1, "abcdef")], length_tolerance=0.5)
    assert pair is None and reason == "tie"


def test_build_pairs_marks_pairs_the_tie_break_changed():
    responses = [{"id": f"p1-r{k}", "prompt_id": "p1", "prompt": "Q", "response": text, "finish_reason": "stop"}
                 for k, text in enumerate(["long " * 20, "short", "bad"])]
    judgments = [{"id": "p1-r0", "score": 4.0}, {"id": "p1-r1", "score": 3.8}, {"id": "p1-r2", "score": 1.0}]
    (plain,), _ = build_pairs(responses, judgments)
    (aware,), _ = build_pairs(responses, judgments, length_tolerance=0.25)
    assert plain["chosen"].startswith("long") and not plain["tie_break_changed"]
    assert aware["chosen"] == "short" and aware["tie_break_changed"]


def test_consistency_becomes_the_pairs_label_smoothing():
    from srlm_lite.stages.pairs import build_pairs

    responses = [{"id": f"p-r{k}", "prompt_id": "p", "prompt": "q", "response": "x" * (k + 1), "finish_reason": "stop"}
                 for k in range(3)]
    rewards = [{"id": f"p-r{k}", "prompt_id": "p", "score": float(k), "consistency": 0.75} for k in range(3)]
    records, _ = build_pairs(responses, rewards)
    assert records[0]["label_smoothing"] == 0.25 and records[0]["chosen_id"] == "p-r2"
    plain, _ = build_pairs(responses, [{k: v for k, v in r.items() if k != "consistency"} for r in rewards])
    assert "label_smoothing" not in plain[0]  # without --consistency the pair records stay as they were
