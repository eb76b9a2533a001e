"""The reward sources on the real model: small two-iteration runs with the `mix` reward (the judge, the implicit
reward against the previous model, verifiable constraints) and with the implicit reward and consistency, and the
signal check `eval reward --json` with the yes/no judge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from srlm_lite.records import read_jsonl

pytestmark = [pytest.mark.real, pytest.mark.slow]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL = """seed = 11
iterations = 2
[instructions]
num_prompts = 4
[responses]
samples = 3
max_tokens = 48
[train]
epochs = 1
batch_size = 2
[reward]
verify_share = 1.0
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srlm_lite", *args], capture_output=True, text=True, timeout=1800)


def _small_run(tmp_path: Path, *flags: str) -> tuple[Path, dict]:
    (tmp_path / "small.toml").write_text(SMALL)
    done = _cli("iterate", "--config", str(tmp_path / "small.toml"), "--out", str(tmp_path / "run"), *flags, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "run", json.loads(done.stdout.strip().splitlines()[-1])


def test_mix_reward_on_a_real_run(tmp_path, real_model_path):
    # mix measures all three components: the judge, the implicit reward, the constraints met
    run, result = _small_run(tmp_path, "--reward", "mix")
    for t, summary in enumerate(result["iterations"], 1):
        assert summary["reward_source"] == "mix" and {"ties", "length_spearman"} <= summary["reward_signal"].keys()
        constraints = read_jsonl(run / f"iter_{t}" / "constraints.jsonl")
        assert constraints and all(1 <= len(c["constraints"]) <= 2 for c in constraints)  # verify_share = 1
        rewards = read_jsonl(run / f"iter_{t}" / "rewards.jsonl")
        assert all({"judge", "implicit", "met"} <= r["components"].keys() for r in rewards)
        assert all(0 <= r["components"]["judge"] <= 5 for r in rewards if r["components"]["judge"] is not None)
        assert summary["pairs"] > 0 and summary["pairs_held_out"] >= 0 and summary["online_loss"] is not None
        loops = [r for r in rewards if r.get("loop")]  # ranked last by default: never a pair's chosen answer
        assert summary["loops_ranked_last"] == len(loops)
        chosen = {p["chosen_id"] for p in read_jsonl(run / f"iter_{t}" / "pairs.jsonl")}
        assert not chosen & {r["id"] for r in loops}


def test_implicit_reward_with_consistency_on_a_real_run(tmp_path, real_model_path):
    run, result = _small_run(tmp_path, "--reward", "implicit", "--consistency")
    first = read_jsonl(run / "iter_1" / "rewards.jsonl")
    assert all("consistency" not in r for r in first)  # no previous model in iteration 1
    second = read_jsonl(run / "iter_2" / "rewards.jsonl")
    assert all(0.0 <= r["consistency"] <= 1.0 for r in second)
    pairs = read_jsonl(run / "iter_2" / "pairs.jsonl")
    assert pairs and all(0.0 <= p["label_smoothing"] <= 1.0 for p in pairs)  # 1 - C enters the DPO loss
    assert "label_smoothing" not in read_jsonl(run / "iter_1" / "pairs.jsonl")[0]
    assert result["iterations"][1]["reward_source"] == "implicit"


def test_signal_check_command(tmp_path, real_model_path):
    if not DATA.exists():
        pytest.skip("../shared/data is not beside the project")
    # mix with the yes/no judge: every component of every source, on IFEval prompts and labelled pairs
    done = _cli("eval", "reward", "--reward", "mix", "--judge-mode", "yesno", "--prompts", str(DATA / "ifeval" / "dev.jsonl"),
                "--limit", "3", "--samples", "2", "--max-tokens", "32", "--pairs",
                str(DATA / "alpaca_eval_prefs" / "dev.jsonl"), "--pairs-limit", "4", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("best_of_n", "random_of_n", "worst_of_n", "pairs_accuracy", "ties", "length_spearman"):
        assert key in found
    assert found["prompts_checked"] == 3 and found["pairs_n"] == 4
    assert found["reward"] == "mix" and found["judge_mode"] == "yesno"
    assert all(0.0 <= found[k] <= 1.0 for k in ("best_of_n", "random_of_n", "worst_of_n", "pairs_accuracy"))


def test_signal_check_of_a_length_only_mix_ranks_shortest_first(tmp_path, real_model_path):
    if not DATA.exists():
        pytest.skip("../shared/data is not beside the project")
    # the mix weights as flags: only the length weighed (negative), so the reward orders candidates shortest first
    done = _cli("eval", "reward", "--reward", "mix", "--mix-judge", "0", "--mix-implicit", "0", "--mix-verify", "0",
                "--mix-length", "-1", "--max-repetition", "1", "--prompts", str(DATA / "ifeval" / "dev.jsonl"), "--limit", "2",
                "--samples", "3", "--max-tokens", "24", "--out", str(tmp_path / "items.jsonl"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["prompts_checked"] == 2 and found["length_spearman"] < 0
    for item in read_jsonl(tmp_path / "items.jsonl"):
        by_reward = sorted(item["candidates"], key=lambda c: -c["reward"])
        assert [c["length"] for c in by_reward] == sorted(c["length"] for c in item["candidates"])
