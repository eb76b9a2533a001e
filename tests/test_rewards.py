"""Reward sources: the pure combination of components, the verifiable constraints, the consistency weight, and
the reward stage on a scripted engine."""

from __future__ import annotations

import math
import random

import pytest

from srlm_lite.rewards import group_rewards
from srlm_lite.rewards.combine import (implicit_reward, mixed, normalized_likelihood, standardized,
                                       verify_reward)
from srlm_lite.rewards.constraints import TRAIN_FAMILIES, draw_constraints, family, met, parse_families


def test_implicit_and_likelihood_rewards_against_hand_computed_values():
    assert implicit_reward(-10.0, -12.0, 20, beta=0.1, alpha=0.0) == pytest.approx(0.2)
    assert implicit_reward(-10.0, -12.0, 20, beta=0.1, alpha=0.01) == pytest.approx(0.0)
    assert normalized_likelihood(-30.0, 10, alpha=0.0) == -3.0
    assert normalized_likelihood(-30.0, 0, alpha=0.0) == -30.0  # no division by zero


def test_verify_reward_is_the_share_met_with_the_judge_only_breaking_ties():
    assert verify_reward([True, False], 5.0, 0.01) == pytest.approx(0.51)
    assert verify_reward([True, True], 0.0, 0.01) == 1.0
    assert verify_reward([True, False], 5.0, 0.01) < verify_reward([True, True], 0.0, 0.01)  # constraints first
    assert verify_reward(None, 4.0, 0.01) == 0.8 and verify_reward(None, None, 0.01) is None


def test_standardized_and_mixed():
    assert standardized([1.0, 3.0, None]) == [-1.0, 1.0, None]
    assert standardized([2.0, 2.0]) == [0.0, 0.0]
    rows = [{"judge": 1.0, "implicit": 3.0}, {"judge": 3.0, "implicit": 1.0}, {"judge": 2.0, "implicit": 2.0}]
    assert mixed(rows, {"judge": 1.0, "implicit": 1.0}) == [0.0, 0.0, 0.0]  # they cancel
    assert mixed(rows, {"judge": 2.0, "implicit": 1.0})[1] == pytest.approx(2 * 1.224745 - 1.224745, abs=1e-5)
    assert mixed([{"judge": 1.0}, {"judge": None}], {"judge": 1.0}) == [0.0, None]


def test_mix_with_a_length_weight_prefers_shorter_answers_among_equals():
    rows = [{"judge": 3.0, "length": 10}, {"judge": 3.0, "length": 20}, {"judge": 3.0, "length": 30}]
    assert group_rewards("mix", rows, weights={"judge": 1.0, "length": -1.0}) == pytest.approx(
        [1.224745, 0.0, -1.224745], abs=1e-6)  # the judge ties (z = 0); length alone orders them, shortest first
    rows[2]["judge"] = 5.0  # z(judge) = [-0.707107, -0.707107, 1.414214]: the long answer's judge gain wins at -0.5
    assert group_rewards("mix", rows, weights={"judge": 1.0, "length": -0.5}) == pytest.approx(
        [-0.707107 + 0.612372, -0.707107, 1.414214 - 0.612372], abs=2e-6)
    assert group_rewards("mix", rows, weights={"judge": 1.0, "length": 0.0}) == pytest.approx(
        [-0.707107, -0.707107, 1.414214], abs=1e-6)  # weight 0: length left out


def test_needed_components_leave_out_what_the_mix_does_not_weigh():
    from srlm_lite.config import load
    from srlm_lite.rewards import needed_components
    from srlm_lite.rewards.verify import uses_verify

    assert needed_components(load(overrides={"reward.source": "mix"}).reward) == ("judge", "implicit", "verify")
    lean = load(overrides={"reward.source": "mix", "reward.mix_implicit": 0.0, "reward.mix_length": -0.5})
    assert needed_components(lean.reward) == ("judge", "verify", "length")  # no log-probs measured
    assert needed_components(load(overrides={"reward.source": "verify"}).reward) == ("judge", "verify")
    no_verify = load(overrides={"reward.source": "mix", "reward.mix_verify": 0.0})
    assert not uses_verify(no_verify) and uses_verify(lean)  # no constraints added where none are weighed


def test_group_rewards_per_source():
    rows = [{"judge": 4.0, "implicit": -1.0, "met": [True, False]}, {"judge": 2.0, "implicit": 0.5, "met": [True, True]}]
    assert group_rewards("judge", rows) == [4.0, 2.0]
    assert group_rewards("implicit", rows) == [-1.0, 0.5]
    verify = group_rewards("verify", rows)
    assert verify[1] > verify[0]  # meets more constraints, though the judge prefers the other
    assert len(group_rewards("mix", rows, weights={"judge": 1.0, "verify": 1.0})) == 2
    with pytest.raises(ValueError, match="weights"):
        group_rewards("mix", rows)  # no hidden default weights: the config's are the only ones
    with pytest.raises(ValueError):
        group_rewards("magic", rows)


def test_constraints_are_seeded_from_the_allowed_families_and_checked_by_ifeval():
    pytest.importorskip("if_verifiable")
    a = draw_constraints(random.Random(3), TRAIN_FAMILIES, 2)
    assert a == draw_constraints(random.Random(3), TRAIN_FAMILIES, 2) and len(a) == 2
    assert all(family(c["id"]) in TRAIN_FAMILIES for c in a)
    only = draw_constraints(random.Random(1), ("punctuation",), 3)
    assert [c["id"] for c in only] == ["punctuation:no_comma"]
    lowercase = [{"id": "change_case:english_lowercase", "kwargs": {}}, {"id": "punctuation:no_comma", "kwargs": {}}]
    assert met("Say hi.", lowercase, "hello there friend") == [True, True]
    assert met("Say hi.", lowercase, "Hello, there") == [False, False]
    with pytest.raises(ValueError, match="known"):
        parse_families("keywords,nonsense")


def test_attach_gives_constraints_to_the_configured_share(tmp_path):
    pytest.importorskip("if_verifiable")
    from srlm_lite.config import load
    from srlm_lite.rewards.verify import attach, constrained, uses_verify

    prompts = [{"id": f"p{i}", "prompt": f"Explain topic {i}."} for i in range(40)]
    config = load(None, {"reward.source": "verify", "reward.verify_share": 0.5})
    records = attach(prompts, config, run_seed=0, iteration=1)
    with_constraints = [r for r in records if r["constraints"]]
    assert 10 < len(with_constraints) < 30 and uses_verify(config) and not uses_verify(load(None))
    assert all(r["prompt"].startswith(r["base_prompt"]) and len(r["prompt"]) > len(r["base_prompt"])
               for r in with_constraints)
    assert attach(prompts, config, 0, 1) == records  # seeded: the same every time
    answered = constrained(tmp_path, prompts, config, 0, 1)
    assert [a["prompt"] for a in answered] == [r["prompt"] for r in records] and (tmp_path / "constraints.jsonl").exists()
    none = attach(prompts, load(None, {"reward.source": "verify", "reward.verify_share": 0.0}), 0, 1)
    assert not any(r["constraints"] for r in none)


def test_loops_are_ranked_below_every_other_candidate():
    from srlm_lite.config import load
    from srlm_lite.rewards import rank_loops_last
    from srlm_lite.rewards.combine import demote_loops

    # spread 4 - 1 = 3, shift 4: the loops (4.0 and 2.0) go to 0.0 and -2.0, below 1.0, their order kept
    assert demote_loops([4.0, 1.0, 2.0, None], [True, False, True, True]) == [0.0, 1.0, -2.0, None]
    assert demote_loops([1.0, 2.0], [False, False]) == [1.0, 2.0] and demote_loops([None], [True]) == [None]
    loop = "the cat sat down " * 8  # seq-rep-4 = 1 - 4 / 29, a loop
    answers = [loop, "a plain answer that says one thing"]
    assert rank_loops_last(load(None).reward, [5.0, 1.0], answers) == [0.0, 1.0]  # shift 5 - 1 + 1 = 5
    assert rank_loops_last(load(None, {"reward.max_repetition": 1.0}).reward, [5.0, 1.0], answers) == [5.0, 1.0]


def test_reward_stage_never_chooses_a_loop(tmp_path):
    from srlm_lite.records import read_jsonl, write_jsonl_atomic
    from srlm_lite.stages import reward

    ctx = _reward_ctx(tmp_path, "judge")
    answers = ["one two three four " * 6, "one two", "a much longer answer of seven words"]  # the first loops
    write_jsonl_atomic(ctx.dir / "responses.jsonl", [
        {"id": f"p-r{k}", "prompt_id": "p", "prompt": "Say something.", "response": a, "finish_reason": "stop"}
        for k, a in enumerate(answers)])
    reward.run(ctx)
    records = read_jsonl(tmp_path / "iter_1" / "rewards.jsonl")
    # judge 3, 1, 2: the loop had the best score and is now the worst (3 - (3 - 1 + 1) = 0)
    assert [r["score"] for r in records] == [0.0, 1.0, 2.0] and records[0]["components"] == {"judge": 3.0}
    assert [r.get("loop", False) for r in records] == [True, False, False]
    assert reward.summarize(records, 1.0)["loops_ranked_last"] == 1


def _reward_ctx(tmp_path, source: str, *, t: int = 1, consistency: bool = False, init: str = "", **settings):
    """An IterationContext over a scripted engine, with one prompt of three candidates judged (`settings`: more
    [reward] settings)."""
    from srlm_lite.config import load
    from srlm_lite.hooks import Hooks
    from srlm_lite.records import write_jsonl_atomic
    from srlm_lite.runs import ModelSpec, RunPaths
    from srlm_lite.stages.context import IterationContext

    from fakes import LogprobEngine

    config = load(None, {"reward.source": source, "reward.consistency": consistency, "init": init,
                         **{f"reward.{key}": value for key, value in settings.items()}})
    ctx = IterationContext(config, RunPaths(tmp_path, tmp_path / "m.gguf", "sha"), t, ModelSpec(tmp_path / "m.gguf"),
                           Hooks())
    ctx.dir.mkdir(parents=True)
    ctx._engine = LogprobEngine(cost=1.0)
    answers = ["one two three", "one two", "a much longer answer of seven words"]
    write_jsonl_atomic(ctx.dir / "responses.jsonl", [
        {"id": f"p-r{k}", "prompt_id": "p", "prompt": "Say something.", "response": a, "finish_reason": "stop"}
        for k, a in enumerate(answers)])
    write_jsonl_atomic(ctx.dir / "judgments.jsonl", [
        {"id": f"p-r{k}", "prompt_id": "p", "judgments": [], "score": s} for k, s in enumerate([3.0, 1.0, 2.0])])
    return ctx


def test_reward_stage_judge_source_passes_the_judge_scores_through(tmp_path):
    from srlm_lite.records import read_jsonl
    from srlm_lite.stages import reward

    stats = reward.run(_reward_ctx(tmp_path, "judge"))
    records = read_jsonl(tmp_path / "iter_1" / "rewards.jsonl")
    assert [r["score"] for r in records] == [3.0, 1.0, 2.0] and "consistency" not in records[0]
    assert stats["source"] == "judge" and stats["signal"]["ties"] == 0 and stats["rewarded"] == 3


def test_reward_stage_mix_with_a_length_weight_measures_only_what_it_weighs(tmp_path):
    from srlm_lite.records import read_jsonl
    from srlm_lite.stages import reward

    ctx = _reward_ctx(tmp_path, "mix", mix_judge=1.0, mix_implicit=0.0, mix_verify=0.0, mix_length=-1.0)
    ctx._engine = None  # an implicit reward of weight 0 needs no log-probs: the engine is never asked
    reward.run(ctx)
    records = read_jsonl(tmp_path / "iter_1" / "rewards.jsonl")
    assert [sorted(r["components"]) for r in records] == [["judge", "length"]] * 3
    # z(judge 3, 1, 2) - z(length 13, 7, 35 chars), hand-computed
    assert [r["score"] for r in records] == pytest.approx([1.667824, -0.283202, -1.384622], abs=1e-6)


def test_reward_stage_implicit_source_and_consistency_against_previous_models(tmp_path, monkeypatch):
    from srlm_lite.records import read_jsonl
    from srlm_lite.rewards import measure
    from srlm_lite.stages import reward

    from fakes import LogprobEngine

    # iteration 1, no --init: no previous model, the length-normalised likelihood under the current one
    reward.run(_reward_ctx(tmp_path / "a", "implicit"))
    first = read_jsonl(tmp_path / "a" / "iter_1" / "rewards.jsonl")
    assert [r["score"] for r in first] == pytest.approx([-1.0666667, -1.0, -1.1142857], abs=1e-6)
    # iteration 2: previous models cost more per word, so the implicit reward grows with length
    opened = []

    def fake_open(spec, options):
        opened.append(spec)
        return LogprobEngine(cost=2.0 + len(opened))

    monkeypatch.setattr(measure, "open_engine", fake_open)
    ctx = _reward_ctx(tmp_path / "b", "implicit", t=2, consistency=True)
    reward.run(ctx)
    records = read_jsonl(tmp_path / "b" / "iter_2" / "rewards.jsonl")
    scores = [r["score"] for r in records]
    assert scores[2] > scores[0] > scores[1]  # 0.1 * (log pi - log pi_before): longer answers gain more
    # the previous model (the base: no --init) is opened once; nothing came before it, so its own ranking is its
    # length-normalised likelihood: -3.x per word favours the short answers, against this model's ranking
    assert len(opened) == 1 and opened[0].adapter is None
    assert records[0]["consistency"] == records[1]["consistency"] < 0.5


class _YesNoEngine:
    """P(yes) scripted per criterion: the k-th rubric question gets `p[k]` of the two answers' mass `mass`."""

    def __init__(self, p, mass=0.8):
        self.p, self.mass, self.asked = p, mass, []

    def chat_prompt(self, user):
        return f"<user>{user}</user>"

    def next_token_logprobs(self, prompt, candidates):
        from srlm_lite.judging.yesno import CRITERIA
        k = next(i for i, c in enumerate(CRITERIA) if c in prompt)
        self.asked.append(k)
        return {" Yes": math.log(self.mass * self.p[k]), " No": math.log(self.mass * (1 - self.p[k]))}


def test_yesno_score_is_the_sum_of_p_yes_over_the_five_criteria():
    from srlm_lite.config import JudgeConfig
    from srlm_lite.judging.yesno import p_yes, yesno_verdicts

    assert p_yes({" Yes": math.log(0.3), " No": math.log(0.1)}) == pytest.approx((0.75, 0.4))
    engine = _YesNoEngine([0.9, 0.8, 0.5, 0.2, 0.1])
    (verdict,) = yesno_verdicts(engine, "Name a river.", "The Danube.", JudgeConfig(mode="yesno"), [0])
    assert engine.asked == [0, 1, 2, 3, 4] and verdict["score"] == pytest.approx(2.5)
    assert verdict["p_yes"] == [0.9, 0.8, 0.5, 0.2, 0.1] and verdict["answer_mass"] == pytest.approx(0.8)
    # a judge that is not answering Yes/No (too little mass on the two answers) gives no score
    (silent,) = yesno_verdicts(_YesNoEngine([0.5] * 5, mass=0.01), "Q", "A", JudgeConfig(mode="yesno"), [0])
    assert silent["score"] is None and silent["source"] == "none"


def test_holdout_split_is_seeded_disjoint_and_skipped_for_few_pairs():
    from types import SimpleNamespace

    from srlm_lite.training.dpo import holdout_split

    pairs = [SimpleNamespace(id=f"p{i}") for i in range(10)]
    trained, held = holdout_split(pairs, 0.2, seed=7)
    assert len(held) == 2 and len(trained) == 8 and not {p.id for p in held} & {p.id for p in trained}
    assert [p.id for p in trained] == sorted((p.id for p in trained), key=lambda i: int(i[1:]))  # order kept
    assert holdout_split(pairs, 0.2, seed=7) == (trained, held)
    assert holdout_split(pairs[:4], 0.2, seed=7) == (pairs[:4], [])  # under 5 pairs: nothing held out
    assert holdout_split(pairs, 0.0, seed=7) == (pairs, [])


def test_honest_metrics_name_each_figure_for_what_it_measures():
    from srlm_lite.training.dpo import honest_metrics

    records = [{"epoch": 0.5, "loss": 0.7, "rewards/accuracies": 0.0, "seconds": 1.0, "tokens": 100},
               {"epoch": 1.0, "loss": 0.6, "rewards/accuracies": 1.0, "seconds": 1.0, "tokens": 100},
               {"epoch": 1.5, "loss": 0.1, "rewards/accuracies": 1.0, "seconds": 2.0, "tokens": 200}]
    fit = {"loss": 0.05, "rewards/accuracies": 1.0, "rewards/margins": 3.0}
    held = {"loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.01}
    found = honest_metrics(records, fit, held)
    assert found["online_loss"] == pytest.approx(0.65) and found["online_accuracy"] == pytest.approx(0.5)
    assert (found["loss_end"], found["eval_loss"], found["eval_accuracy"]) == (0.05, 0.69, 0.5)
    assert found["tokens_per_second"] == pytest.approx(100.0) and found["steps"] == 3
    assert honest_metrics(records, fit, None)["eval_loss"] is None


def test_signal_check_ranks_candidates_and_scores_pairs():
    from srlm_lite.config import RunConfig
    from srlm_lite.evals.reward_check import RewardModel, check_reward

    from fakes import LogprobEngine

    config = RunConfig()
    config.reward.source = "judge"  # the scripted judge prefers longer answers
    config.reward.max_repetition = 1.0  # the scripted answers repeat one word: loops, not demoted here
    records = [{"key": 1, "prompt": "Write about tides. Use at most 20 words.",
                "instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"relation": "less than", "num_words": 20}]},
               {"key": 2, "prompt": "Say hello."}]
    pairs = [{"index": 0, "instruction": "Q", "response_a": "short", "response_b": "a much longer answer " * 4,
              "preferred": "b"},
             {"index": 1, "instruction": "Q", "response_a": "a much longer answer " * 4, "response_b": "short",
              "preferred": "b"}]
    result = check_reward(RewardModel(LogprobEngine(), config), records, pairs, samples=4, max_tokens=64)
    for key in ("best_of_n", "random_of_n", "worst_of_n", "ties", "length_spearman", "pairs_accuracy"):
        assert key in result
    assert result["length_spearman"] > 0.5  # a judge that prefers length, seen as such
    assert result["pairs_accuracy"] == pytest.approx(0.5) and result["pairs_accuracy_preferred_shorter"] == 0.0
    assert result["best_of_n"] <= result["worst_of_n"]  # longer answers break the word limit: the judge picks them
    assert len(result["items"]) == 2 and len(result["items"][0]["candidates"]) == 4
