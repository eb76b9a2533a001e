"""SFT (loss on response tokens only) and EFT data building: pure parts hand-computed, stages on fakes."""

import json

import pytest

from srlm_lite.mlx_runtime import mx


from srlm_lite.training import eft  # noqa: E402
from srlm_lite.config import JudgeConfig  # noqa: E402
from srlm_lite.training.sft import Example, batches, load_examples, nll_loss  # noqa: E402

from fakes import ScriptedEngine  # noqa: E402


def test_nll_is_token_weighted_over_the_batch():
    # two sequences: log-probs -6 over 3 tokens and -2 over 1 token -> 8 / 4 = 2.0 (not the mean of 2 and 2)
    assert float(nll_loss(mx.array([-6.0, -2.0]), mx.array([3, 1]))) == pytest.approx(2.0)
    assert float(nll_loss(mx.array([-6.0, -1.0]), mx.array([3, 1]))) == pytest.approx(7 / 4)


def test_load_examples_accepts_aliases_and_names_bad_lines(tmp_path):
    path = tmp_path / "ift.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi", "output": " hi "}) + "\n" +
                    json.dumps({"prompt": "Q", "response": "A"}) + "\n")
    examples = load_examples(path, "ift")
    assert [(e["prompt"], e["response"], e["source"]) for e in examples] == [("Say hi", "hi", "ift"), ("Q", "A", "ift")]
    path.write_text(json.dumps({"prompt": "Q"}) + "\n")
    with pytest.raises(ValueError, match=":1: need"):
        load_examples(path, "ift")


def test_sft_batches_are_bucketed_and_seeded():
    examples = [Example(f"e{i}", list(range(3 + i)), 2) for i in range(10)]
    first = batches(examples, 3, seed=0, epoch=0)
    assert sorted(len(b) for b in first) == [1, 3, 3, 3]
    assert all(max(len(e.tokens) for e in b) - min(len(e.tokens) for e in b) <= 2 for b in first)
    assert first == batches(examples, 3, seed=0, epoch=0) and first != batches(examples, 3, seed=0, epoch=1)


def test_verdict_text_ends_with_one_integer_score():
    assert eft.verdict_text("Clear and correct.\nScore: 3.7", 4) == "Clear and correct.\nScore: 4"
    assert eft.verdict_text("", 2) == "Score: 2"
    assert eft.agreeing(4, 3) and not eft.agreeing(3, 3) and not eft.agreeing(None, 1)


def test_eft_needs_a_judge_that_writes():
    with pytest.raises(ValueError, match="justification"):
        eft.build(ScriptedEngine(), [], JudgeConfig(mode="expected"))


def test_balancing_by_score_and_by_length():
    rows = [{"score": s, "pair": p, "preferred_longer": p < 3} for p, s in enumerate([4, 4, 4, 1, 1])]
    assert [r["score"] for r in eft.balance_by_score(rows)] == [4, 4, 1, 1]
    assert {r["pair"] for r in eft.balance_by_length(rows)} == {0, 1, 3, 4}


def test_eft_build_keeps_only_agreeing_verdicts():
    # the scripted judge scores by length, so it agrees with labels that prefer the longer answer only
    pairs = [{"index": i, "instruction": f"q{i}", "response_a": "x" * (40 + 120 * (i % 2)), "response_b": "y" * 60,
              "preferred": "a"} for i in range(4)]  # pairs 1, 3: a is longer and preferred
    examples, stats = eft.build(ScriptedEngine(), pairs, JudgeConfig(judge_samples=2, mode="forced"))
    assert stats["pairs_agreeing"] == 2 and {e["pair"] for e in examples} == {1, 3}
    assert len(examples) == 2 * 2 * 2  # 2 pairs x 2 samples x 2 answers
    assert all(e["response"].endswith(f"Score: {e['score']}") and "<response>" in e["prompt"] for e in examples)
    assert all(e["preferred_longer"] for e in examples)
    balanced, stats = eft.build(ScriptedEngine(), pairs, JudgeConfig(judge_samples=2, mode="forced"),
                                    balance_lengths=True)
    assert balanced == [] and stats["examples"] == 0  # no shorter-preferred pair agreed: nothing to balance with


def test_eft_target_is_the_whole_verdict_or_the_score_line_the_expected_judge_reads():
    example = {"response": "On topic and complete.\nScore: 4", "score": 4}
    assert eft.target_text(example, "verdict") == "On topic and complete.\nScore: 4"
    assert eft.target_text(example, "score") == "Score: 4"
    with pytest.raises(ValueError, match="target"):
        eft.target_text(example, "label")
