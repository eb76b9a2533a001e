"""`srlm-lite experiment` on the embedded SmolLM2-135M: a tiny sft-vs-dpo (paired data, the SFT objective trained on
the chosen answers only, KL measured by llama.cpp), resumed; judge-vs-generate's candidates checked and judged."""

from pathlib import Path

import pytest

from srlm_lite.config import load
from srlm_lite.experiments import Measures, data_files, plan_experiment, run_experiment
from srlm_lite.experiments.measure import Target, measure_model
from srlm_lite.records import file_sha256, read_json, read_jsonl
from srlm_lite.runs import model_spec

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MEASURES = Measures(drift_prompts=2, drift_samples=2, drift_max_tokens=24, ifeval_prompts=2, ifeval_max_tokens=24,
                    judge_pairs=2, gallery_prompts=1, gallery_max_tokens=16, jvg_samples=4, jvg_max_tokens=48)

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def data():
    pytest.importorskip("if_verifiable")
    if not DATA.exists():
        pytest.skip("../shared/data is not beside the project")
    return data_files(DATA)


def test_real_sft_vs_dpo_tiny(real_model_path, data, tmp_path):
    base = load(None, {"seed": 3, "instructions.num_prompts": 6, "instructions.max_attempts": 24,
                       "responses.max_tokens": 32})
    plan = plan_experiment("sft-vs-dpo", tmp_path / "exp", iterations=1, data=data, base=base, measures=MEASURES)
    result = run_experiment(plan)
    arms = tmp_path / "exp" / "arms"
    for name in ("instructions.jsonl", "responses.jsonl", "judgments.jsonl"):
        assert (arms / "dpo" / "iter_1" / name).stat().st_ino == (arms / "sft" / "iter_1" / name).stat().st_ino
    assert read_jsonl(arms / "dpo" / "iter_1" / "pairs.jsonl") == read_jsonl(arms / "sft" / "iter_1" / "pairs.jsonl")
    sft, dpo = (read_json(arms / a / "iter_1" / "train_summary.json") for a in ("sft", "dpo"))
    assert sft["objective"] == "sft" and sft["pairs_trained"] == dpo["pairs_trained"] and sft["steps"] == dpo["steps"]
    assert sft["nll_end"] < sft["nll_start"]  # it learnt its chosen answers
    held = [read_jsonl(arms / a / "iter_1" / "reference_logps_heldout.jsonl") for a in ("sft", "dpo")]
    assert [r["id"] for r in held[0]] == [r["id"] for r in held[1]]  # the same pairs held out of both
    assert sft["pairs_held_out"] == dpo["pairs_held_out"] == len(held[0])
    sft_log, dpo_log = (read_jsonl(arms / a / "iter_1" / "train_log.jsonl") for a in ("sft", "dpo"))
    assert "rewards/rejected" not in sft_log[0] and "rewards/rejected" in dpo_log[0]
    # the tokens of each SFT step are those of the chosen answers in DPO's batch at that step
    assert all(s["tokens"] < d["tokens"] for s, d in zip(sft_log, dpo_log))
    assert file_sha256(arms / "sft" / "iter_1" / "adapter" / "adapters.safetensors") != \
        file_sha256(arms / "dpo" / "iter_1" / "adapter" / "adapters.safetensors")
    for arm in ("dpo", "sft"):
        m1 = result["arms"][arm][1]
        assert m1["kl_to_m0"] is not None and m1["kl_se"] is not None and m1["judge_n"] == 2
        assert len(read_jsonl(tmp_path / "exp" / "measures" / arm / "M1" / "drift_logps.jsonl")) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").rglob("*.jsonl")}
    again = run_experiment(plan)  # resumed when finished: nothing made again (no record file rewritten)
    assert again["arms"] == result["arms"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "exp").rglob("*.jsonl")} == mtimes
    _judge_vs_generate_reusing(tmp_path, data, base, result)


def _judge_vs_generate_reusing(tmp_path, data, base, source_result):
    """judge-vs-generate --reuse of the experiment above: its arm is that dpo arm, so iteration 1 and every measure
    but judge-vs-generate's own are taken (linked), and M1 is measured through the linked adapter."""
    measures = Measures(**{**MEASURES.__dict__, "jvg_prompts": 2})
    plan = plan_experiment("judge-vs-generate", tmp_path / "jvg", iterations=1, data=data, base=base,
                           measures=measures, reuse=(tmp_path / "exp",))
    result = run_experiment(plan)
    made, taken = (tmp_path / "exp" / "arms" / "dpo" / "iter_1", tmp_path / "jvg" / "arms" / "dpo" / "iter_1")
    for name in ("responses.jsonl", "adapter/adapter.gguf", "adapter/adapters.safetensors"):
        assert (taken / name).stat().st_ino == (made / name).stat().st_ino
    assert read_json(taken / "manifest.json")["reused_from"] == str(made)
    assert sorted(read_json(tmp_path / "jvg" / "reused.json")["measures"]) == sorted(
        f"{m}/{part}" for m in ("M0", "dpo M1") for part in ("drift", "gallery", "ifeval", "judge"))
    for row, source in zip(result["arms"]["dpo"], source_result["arms"]["dpo"]):
        shared = ("kl_to_m0", "ifeval_prompt_loose", "judge_accuracy", "delta_logp_rejected")
        assert {k: row.get(k) for k in shared} == {k: source.get(k) for k in shared}
        assert row["jvg_prompts"] == 2 and 0 <= row["generate_pass"] <= row["oracle_pass"] <= 1


def test_real_kl_of_a_model_against_itself_is_exactly_zero(real_model_path, data, tmp_path):
    """M_k's samples are scored by fresh engines in the same order: the same model twice gives 0 for every answer."""
    config = load(None, {"seed": 5})
    m0 = model_spec(config, None, "M0")
    found = measure_model(Target(m0, m0, 1, config, tmp_path / "self"), MEASURES, data, parts=("drift",))["drift"]
    assert found["kl_to_m0"] == 0.0 and found["kl_se"] == 0.0 and found["kl_n"] == 4
    logps = read_jsonl(tmp_path / "self" / "drift_logps.jsonl")
    assert all(r["logp_model"] == r["logp_m0"] < 0 and r["tokens"] > 0 for r in logps)


def test_real_judge_vs_generate_candidates(real_model_path, data, tmp_path):
    config = load(None, {"seed": 5})
    m0 = model_spec(config, None, "M0")
    measures = Measures(**{**MEASURES.__dict__, "jvg_prompts": 3})
    found = measure_model(Target(m0, m0, 0, config, tmp_path / "M0"), measures, data, parts=("jvg",))["jvg"]
    records = read_jsonl(tmp_path / "M0" / "jvg_candidates.jsonl")
    assert found["prompts"] == 3 and found["candidates"] == 12 and len(records) == 3
    candidates = [c for r in records for c in r["candidates"]]
    assert all(c["score"] is not None and 0 <= c["score"] <= 5 for c in candidates)  # the expected judge always scores
    assert all(c["pass"] == all(c["loose"]) for c in candidates)
    assert len({c["response"] for c in candidates}) > 1  # sampled, not greedy
