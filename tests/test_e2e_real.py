"""End to end on the real embedded model: `srlm-lite iterate` for 2 small iterations, then a killed run resumed.

Marked `real` and `slow`: run alone with `pytest -m real`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srlm_lite.records import read_json, read_jsonl

pytestmark = [pytest.mark.real, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

SMALL = """\
iterations = 2
seed = 7
[instructions]
num_prompts = 4
[responses]
samples = 3
max_tokens = 48
[judge]
judge_samples = 2
max_tokens = 24
[train]
epochs = 1
batch_size = 2
"""


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srlm_lite", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, real_model_path):
    root = tmp_path_factory.mktemp("e2e")
    (root / "small.toml").write_text(SMALL)
    evals = []
    if DATA.exists():  # two items of each evaluation after every iteration (and of M0)
        evals = ["--eval", f"judge={DATA / 'alpaca_eval_prefs' / 'dev.jsonl'}",
                 "--eval", f"ifeval={DATA / 'ifeval' / 'dev.jsonl'}",
                 "--eval", f"h2h={DATA / 'mt_bench' / 'question.jsonl'}", "--eval-limit", "2"]
    done = _cli("iterate", "--config", str(root / "small.toml"), "--out", str(root / "run"), "--json", *evals,
                timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run", json.loads(done.stdout.strip().splitlines()[-1])


def test_run_directory_holds_every_stage(small_run):
    run, result = small_run
    assert (run / "config.toml").exists() and (run / "manifest.json").exists()
    manifest = read_json(run / "manifest.json")
    assert len(manifest["model_sha256"]) == 64 and manifest["seed"] == 7 and manifest["versions"]["mlx"]
    for t in (1, 2):
        d = run / f"iter_{t}"
        for name in ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "pairs.jsonl",
                     "reference_logps.jsonl", "train_log.jsonl", "manifest.json",
                     "adapter/adapters.safetensors", "adapter/adapter_config.json", "adapter/adapter.gguf"):
            assert (d / name).exists(), f"iter_{t}/{name} missing"
        assert not list(d.glob("*.partial"))
        for name in ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "pairs.jsonl"):
            ids = [r["id"] for r in read_jsonl(d / name)]
            assert len(ids) == len(set(ids)) > 0
        responses = read_jsonl(d / "responses.jsonl")
        assert len(responses) == 4 * 3
        pairs = read_jsonl(d / "pairs.jsonl")
        for pair in pairs:
            assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "id"} <= pair.keys()
            assert pair["score_chosen"] > pair["score_rejected"]
        log = read_jsonl(d / "train_log.jsonl")
        assert log[0]["loss"] == pytest.approx(0.693147, abs=1e-4)


def test_json_summary_has_the_promised_fields(small_run):
    _, result = small_run
    assert [it["iteration"] for it in result["iterations"]] == [1, 2]
    for it in result["iterations"]:
        for key in ("prompts_kept", "responses", "judged", "parse_rate", "pairs", "mean_score_chosen",
                    "mean_score_rejected", "dpo_loss_start", "dpo_loss_end", "reward_accuracy_start",
                    "reward_accuracy_end", "mean_response_chars"):
            assert key in it
        assert it["judged"] == it["responses"] == 12
        assert it["dpo_loss_end"] < it["dpo_loss_start"]


def test_iterate_eval_writes_each_models_evaluations(small_run):
    run, result = small_run
    if not DATA.exists():
        pytest.skip("../shared/data is not beside the project")
    assert set(result["evals"]) == {"M0", "M1", "M2"}
    assert set(result["evals"]["M0"]) == {"judge", "ifeval"} and set(result["evals"]["M2"]) == {"judge", "ifeval", "h2h"}
    assert result["evals"]["M1"]["judge"]["n"] == 2 and result["evals"]["M2"]["h2h"]["n"] == 2
    assert (run / "evals" / "judge_M0.json").exists() and (run / "iter_2" / "eval_ifeval.json").exists()
    assert read_json(run / "iter_1" / "eval_h2h.json")["b"] == "M0"
    ifeval = result["evals"]["M2"]["ifeval"]
    assert ifeval["paired_vs_M0"]["n"] == 2 and ifeval["paired_vs_M0_no_loop"]["n"] == 2
    assert ifeval["prompt_loose_nondegenerate"] <= ifeval["prompt_loose"]


def test_iteration_2_sampled_from_the_model_trained_in_iteration_1(small_run, real_model_path):
    run, result = small_run
    it1, it2 = result["iterations"]
    assert it1["sampled_with"] is None
    assert it2["sampled_with"] == it1["adapter_gguf"]
    assert it2["sampled_with_sha256"] == it1["adapter_gguf_sha256"]
    assert read_json(run / "iter_2" / "manifest.json")["summary"]["sampled_with_sha256"] == it1["adapter_gguf_sha256"]
    # ... and that adapter really changes what llama.cpp computes (it is M1, not M0 under another name)
    from srlm_lite.models.parity import llama_token_logprobs, parity_tokens

    tokens = parity_tokens(real_model_path)[0]
    base = llama_token_logprobs(real_model_path, tokens)
    tuned = llama_token_logprobs(real_model_path, tokens, lora_path=it1["adapter_gguf"])
    assert abs(tuned.sum() - base.sum()) > 0.05


def test_a_stage_runs_alone_on_the_run_directory(small_run):
    run, _ = small_run
    before = (run / "iter_1" / "pairs.jsonl").read_text()
    done = _cli("pairs", "--run", str(run), "--iteration", "1", "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["pairs"] == len(before.splitlines())
    assert (run / "iter_1" / "pairs.jsonl").read_text() == before  # deterministic: same pairs, same order


def test_doctor_parity_for_each_iteration(small_run):
    run, _ = small_run
    done = _cli("doctor", "--run", str(run), "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["model"][:2] for row in report["parity"]] == ["M0", "M1", "M2"]
    assert all(row["mean_abs_diff"] < 0.1 for row in report["parity"])
    assert report["model"]["embedded_found"] and report["llama_cpp"]["available"]


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path, real_model_path):
    config = tmp_path / "c.toml"
    # 12 prompts x 3 candidates: the responses stage writes 5 prompts' candidates a batch (16 sequences), so the
    # kill lands after the first batch and before the last
    config.write_text(SMALL.replace("iterations = 2", "iterations = 1").replace("num_prompts = 4", "num_prompts = 12"))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "srlm_lite", "iterate", "--config", str(config), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    partial = run / "iter_1" / "responses.jsonl.partial"
    deadline = time.time() + 600
    while time.time() < deadline and not (partial.exists() and len(read_jsonl(partial)) >= 5):
        if (run / "iter_1" / "responses.jsonl").exists():
            break  # the stage finished before the kill: fail below rather than wait
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.exists(), "the run never reached the responses stage"
    before = {r["id"]: r for r in read_jsonl(partial)}
    done = _cli("iterate", "--out", str(run), "--resume", "--json", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    responses = read_jsonl(run / "iter_1" / "responses.jsonl")
    ids = [r["id"] for r in responses]
    assert len(before) < 36 and len(ids) == len(set(ids)) == 36
    assert all(before[i] == next(r for r in responses if r["id"] == i) for i in before)  # kept, not redone
    assert (run / "iter_1" / "manifest.json").exists()
