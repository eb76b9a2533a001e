"""Stages 1-4 on a scripted engine: records, ids, funnel counts, and resume after a kill without loss or duplicates."""

import pytest

from srlm_lite.stages import instructions, judge, pairs, responses
from srlm_lite.config import InstructionsConfig, JudgeConfig, ResponsesConfig
from srlm_lite.records import StageFile, read_jsonl
from srlm_lite.templates import seed_prompts

from fakes import ScriptedEngine

SEEDS = [s["prompt"] for s in seed_prompts()]


def test_seed_pool_is_ours_and_varied():
    pool = seed_prompts()
    assert len(pool) >= 150
    assert len({p["id"] for p in pool}) == len(pool)
    categories = {p["category"] for p in pool}
    assert {"advice", "explanation", "writing", "rewriting", "coding", "maths", "reasoning", "planning",
            "classification", "extraction", "brainstorming"} <= categories


def test_few_shot_prompt_has_eight_examples_six_seed_two_generated():
    import random

    picker = instructions.Picker(SEEDS, InstructionsConfig())
    shots = picker.examples(["generated one", "generated two", "generated three"], random.Random(0))
    assert len(shots) == 8
    assert sum(s.startswith("generated") for s in shots) == 2
    prompt = instructions.few_shot_prompt(shots)
    assert prompt.count("<task>") == 9 and prompt.endswith("<task>\n")
    assert len(picker.examples([], random.Random(0))) == 8  # seeds fill in before anything is generated


def test_instructions_stage_keeps_filters_and_dedups(tmp_path):
    config = InstructionsConfig(num_prompts=12)
    stats = instructions.self_instruct(ScriptedEngine(), tmp_path, config, seeds=SEEDS, previous=[], run_seed=0, iteration=1)
    records = read_jsonl(tmp_path / instructions.FILE)
    kept = instructions.kept_prompts(records)
    assert stats["kept"] == len(kept) == 12
    assert stats["generated"] == len(records) >= 12
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["rouge_l_max"] <= config.rouge_threshold for r in records if r["kept"])
    assert all(r["reason"] == "duplicate" for r in records if not r["kept"])  # the fake only repeats itself


def test_stage_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    prompts = [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(5)]
    config = ResponsesConfig(samples=4)
    with pytest.raises(KeyboardInterrupt):
        responses.sample_candidates(ScriptedEngine(fail_after=18), prompts, tmp_path, config, run_seed=1, iteration=1)
    stage = StageFile(tmp_path / responses.FILE)
    # the candidates of a batch of prompts (16 sequences: 4 prompts x 4) are written once all are drawn
    assert not stage.done and len(stage.records()) == 16
    with open(stage.partial, "a") as fh:  # a torn line, as a kill mid-write leaves
        fh.write('{"id": "p1-r3", "prom')
    responses.sample_candidates(ScriptedEngine(), prompts, tmp_path, config, run_seed=1, iteration=1)
    resumed = read_jsonl(tmp_path / responses.FILE)
    uninterrupted_dir = tmp_path / "clean"
    responses.sample_candidates(ScriptedEngine(), prompts, uninterrupted_dir, config, run_seed=1, iteration=1)
    assert resumed == read_jsonl(uninterrupted_dir / responses.FILE)  # same records, same order, no duplicates
    assert [r["id"] for r in resumed] == [f"p{i}-r{k}" for i in range(5) for k in range(4)]


def test_judge_forced_mode_scores_everything_and_counts_parse_rate(tmp_path):
    candidates = [{"id": f"p0-r{k}", "prompt_id": "p0", "prompt": "q", "response": "x" * (30 * k + 5),
                   "finish_reason": "stop"} for k in range(4)]
    stats = judge.judge_responses(ScriptedEngine(write_scores=False), candidates, tmp_path,
                      JudgeConfig(judge_samples=3, mode="forced"), run_seed=0, iteration=1)
    assert stats["parse_rate"] == 0.0 and stats["score_rate"] == 1.0 and stats["judgments"] == 12
    records = read_jsonl(tmp_path / judge.FILE)
    scores = [r["score"] for r in records]
    assert scores == sorted(scores) and scores[0] < scores[-1]  # the fake judge prefers longer answers
    assert all(v["source"] == "expected" for r in records for v in r["judgments"])


def test_judge_sampled_mode_leaves_unparsed_unscored(tmp_path):
    candidates = [{"id": "p0-r0", "prompt_id": "p0", "prompt": "q", "response": "Score: 5", "finish_reason": "stop"}]
    stats = judge.judge_responses(ScriptedEngine(write_scores=False), candidates, tmp_path,
                      JudgeConfig(judge_samples=2, mode="sampled"), run_seed=0, iteration=1)
    assert stats["unscored"] == 2 and stats["parse_rate"] == 0.0
    assert read_jsonl(tmp_path / judge.FILE)[0]["score"] is None  # "Score: 5" in the response counts for nothing


def test_judge_parses_the_judges_own_score(tmp_path):
    candidates = [{"id": f"p0-r{k}", "prompt_id": "p0", "prompt": "q", "response": "y" * (50 * k),
                   "finish_reason": "stop"} for k in range(1, 4)]
    stats = judge.judge_responses(ScriptedEngine(write_scores=True), candidates, tmp_path,
                      JudgeConfig(judge_samples=1, mode="forced"), run_seed=0, iteration=1)
    assert stats["parse_rate"] == 1.0
    records, outcomes = pairs.build_pairs(candidates, read_jsonl(tmp_path / judge.FILE))
    assert outcomes == {"ok": 1} and records[0]["chosen_id"] == "p0-r3" and records[0]["rejected_id"] == "p0-r1"


def test_judge_expected_mode_is_one_pass_without_generation(tmp_path):
    candidates = [{"id": f"p0-r{k}", "prompt_id": "p0", "prompt": "q", "response": "x" * (30 * k + 5),
                   "finish_reason": "stop"} for k in range(4)]
    engine = ScriptedEngine()
    stats = judge.judge_responses(engine, candidates, tmp_path, JudgeConfig(mode="expected", judge_samples=3), run_seed=0,
                      iteration=1)
    assert engine.calls == 0 and stats["judgments"] == 4 and stats["score_rate"] == 1.0
    records = read_jsonl(tmp_path / judge.FILE)
    assert all(len(r["judgments"]) == 1 and r["judgments"][0]["source"] == "expected" for r in records)
    scores = [r["score"] for r in records]
    assert scores == sorted(scores) and scores[0] < scores[-1]


def test_judge_pairwise_mode_scores_by_round_robin(tmp_path):
    candidates = [{"id": f"p0-r{k}", "prompt_id": "p0", "prompt": "q", "response": "x" * (30 * k + 5),
                   "finish_reason": "stop"} for k in range(3)]
    candidates += [{"id": "p1-r0", "prompt_id": "p1", "prompt": "q1", "response": "same", "finish_reason": "stop"},
                   {"id": "p1-r1", "prompt_id": "p1", "prompt": "q1", "response": "also", "finish_reason": "stop"}]
    engine = ScriptedEngine()
    stats = judge.judge_responses(engine, candidates, tmp_path, JudgeConfig(mode="pairwise"), run_seed=0, iteration=1)
    assert engine.calls == 0 and stats["judged"] == 5
    records = {r["id"]: r for r in read_jsonl(tmp_path / judge.FILE)}
    # longest answer beats both others: P(better) = (0.8 + 1 - 0.3) / 2 = 0.75 in each comparison
    assert records["p0-r2"]["score"] == pytest.approx(5 * 0.75)
    assert records["p0-r0"]["score"] == pytest.approx(5 * 0.25)
    assert [v["opponent"] for v in records["p0-r1"]["judgments"]] == ["p0-r0", "p0-r2"]
    # equal lengths: the fake's position bias (0.6 for "A" in both orders) cancels out exactly
    assert records["p1-r0"]["score"] == records["p1-r1"]["score"] == pytest.approx(2.5)


def test_group_by_keeps_first_seen_order_of_groups_and_records():
    from srlm_lite.records import group_by

    records = [{"id": "b-0", "prompt_id": "b"}, {"id": "a-0", "prompt_id": "a"}, {"id": "b-1", "prompt_id": "b"}]
    assert {k: [r["id"] for r in v] for k, v in group_by(records).items()} == {"b": ["b-0", "b-1"], "a": ["a-0"]}
    assert list(group_by(records)) == ["b", "a"] and list(group_by(records, key="id")) == ["b-0", "a-0", "b-1"]
