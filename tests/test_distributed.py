"""Data-parallel DPO with MLX's distributed runtime: how batches are shared out (pure), and 2 processes on loopback
(`mlx.launch -n 2`, the ring backend) taking the same steps as one process on a tiny random llama."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from srlm_lite.training.distributed import launch_command, launch_iteration, shard
from srlm_lite.training.dpo import TokenizedPair

HERE = Path(__file__).resolve().parent


def _pair(i: int, n: int = 3) -> TokenizedPair:
    return TokenizedPair(f"p{i}", [1] * (n + 2), [1] * (n + 1), 2, 2)


def test_shards_cover_each_batch_once_with_weights_summing_to_one():
    batch = [_pair(i) for i in range(5)]
    pieces = [shard(batch, rank, 2) for rank in range(2)]
    assert [[p.id for p in piece.pairs] for piece in pieces] == [["p0", "p2", "p4"], ["p1", "p3"]]
    assert [piece.weight for piece in pieces] == [0.6, 0.4] and pieces[0].tokens == 5 * (5 + 4)
    lone = [shard([_pair(9)], rank, 2) for rank in range(2)]
    assert (lone[0].weight, lone[1].weight) == (1.0, 0.0)  # rank 1 gets a stand-in that counts for nothing


def test_launch_command_takes_a_hostfile_or_a_host_list(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text("[]")
    by_file = launch_command(str(hostfile), tmp_path / "run", 2)
    by_list = launch_command("127.0.0.1,127.0.0.1", tmp_path / "run", 2)
    assert by_file[by_file.index("--hostfile") + 1] == str(hostfile)
    assert by_list[by_list.index("--hosts") + 1] == "127.0.0.1,127.0.0.1"
    assert by_list[-6:] == ["-m", "srlm_lite.training.distributed", "--run", str((tmp_path / "run").resolve()),
                            "--iteration", "2"]


def test_iterate_offers_train_hosts_and_the_train_stage_launches_with_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli
    from srlm_lite.config import RunConfig
    from srlm_lite.stages import train

    assert "--train-hosts" in CliRunner().invoke(cli, ["iterate", "--help"]).output
    launched = []
    monkeypatch.setattr("srlm_lite.training.distributed.launch_iteration",
                        lambda run, t, hosts, say=None: launched.append((run, t, hosts)) or {"ranks": 2})
    released = []
    ctx = SimpleNamespace(config=RunConfig(), paths=SimpleNamespace(root=tmp_path), t=2,
                          hooks=SimpleNamespace(say=None), release_engine=lambda: released.append(True))
    ctx.config.train.hosts = "127.0.0.1,127.0.0.1"
    assert train.run(ctx) == {"ranks": 2} and launched == [(tmp_path, 2, "127.0.0.1,127.0.0.1")] and released
    ctx.config.train.objective = "sft"
    with pytest.raises(ValueError, match="dpo objective only"):
        train.run(ctx)


def launch_two(script_args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """`mlx.launch -n 2` on loopback (ring backend), on a port range of its own."""
    port = random.Random().randrange(20000, 60000, 16)
    launcher = Path(sys.executable).with_name("mlx.launch")
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "mlx._distributed_utils.launch"]
    return subprocess.run(command + ["-n", "2", "--backend", "ring", "--starting-port", str(port), "--python",
                                     sys.executable, "--", *script_args], capture_output=True, text=True,
                          timeout=timeout)


def test_two_processes_take_the_single_process_steps(tmp_path):
    single = subprocess.run([sys.executable, str(HERE / "dist_dpo_step.py"), "--single", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    done = launch_two([str(HERE / "dist_dpo_step.py"), str(tmp_path / "two")])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    one = json.loads((tmp_path / "one" / "losses.json").read_text())
    two = json.loads((tmp_path / "two" / "losses.json").read_text())
    assert (one["ranks"], two["ranks"]) == (1, 2) and len(one["records"]) == len(two["records"]) == 3
    for a, b in zip(one["records"], two["records"]):
        for key in ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen"):
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), key
    assert one["records"][0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # step 1: policy == reference
    assert one["records"][-1]["loss"] < 0.69  # and it trains
    for pid, (c, r) in one["reference"].items():
        assert two["reference"][pid] == pytest.approx([c, r], abs=1e-4)

    from srlm_lite.mlx_runtime import mx

    a, b = mx.load(str(tmp_path / "one" / "lora.safetensors")), mx.load(str(tmp_path / "two" / "lora.safetensors"))
    assert set(a) == set(b) and len(a) == 2 * 7 * 2
    moved = max(float(np.abs(np.array(v)).max()) for k, v in a.items() if k.endswith("lora_b"))
    assert moved > 1e-3  # lora_b starts at zero: the steps changed it
    for name in a:
        np.testing.assert_allclose(np.array(b[name]), np.array(a[name]), atol=1e-5, rtol=1e-4, err_msg=name)


PAIRS = [
    ("Name a primary colour.", "Red is a primary colour.", "I like turtles."),
    ("What is 2 + 2?", "2 + 2 = 4.", "It is 5, probably."),
    ("Give a synonym for happy.", "Joyful.", "Sad."),
    ("Translate 'bonjour' to English.", "'Bonjour' means 'hello'.", "It is a kind of bread."),
    ("What is the capital of Italy?", "Rome is the capital of Italy.", "Paris."),
    ("Write a short greeting.", "Hello, and welcome!", "No."),
]


@pytest.mark.real
@pytest.mark.slow
def test_the_train_stage_on_two_processes_matches_one_process(tmp_path, real_model_path):
    """The real model's train stage run by `mlx.launch -n 2` (loopback) against `dpo.train_iteration` in one process
    on the same pairs: the same losses step by step and the same adapter, within float tolerance; rank 0 alone wrote
    the iteration folder."""
    from srlm_lite.config import RunConfig, to_toml
    from srlm_lite.mlx_runtime import mx
    from srlm_lite.records import read_jsonl, write_jsonl_atomic
    from srlm_lite.training.dpo import train_iteration

    config = RunConfig()
    config.train.batch_size, config.train.learning_rate, config.train.checkpoint_every = 2, 1e-4, 0
    pairs = [{"id": f"pair-{i}", "prompt": p, "chosen": c, "rejected": r, "score_chosen": 4.0, "score_rejected": 1.0}
             for i, (p, c, r) in enumerate(PAIRS)]
    for name in ("one", "two"):
        (tmp_path / name / "iter_1").mkdir(parents=True)
        (tmp_path / name / "config.toml").write_text(to_toml(config))
        write_jsonl_atomic(tmp_path / name / "iter_1" / "pairs.jsonl", pairs)
    one = train_iteration(pairs, tmp_path / "one" / "iter_1", config.train, base_model=real_model_path,
                          init_adapter=None, run_seed=config.seed, iteration=1)
    two = launch_iteration(tmp_path / "two", 1, "127.0.0.1,127.0.0.1")  # what `iterate --train-hosts` runs
    assert two["ranks"] == 2 and two["steps"] == one["steps"] == 3  # 5 pairs trained (1 held out), batches of 2
    log_one, log_two = (read_jsonl(tmp_path / n / "iter_1" / "train_log.jsonl") for n in ("one", "two"))
    assert [r["id"] for r in log_two] == ["step-1", "step-2", "step-3"]  # one writer: no step twice
    for a, b in zip(log_one, log_two):
        assert b["loss"] == pytest.approx(a["loss"], abs=2e-4), (a, b)
        assert b["rewards/margins"] == pytest.approx(a["rewards/margins"], abs=2e-3)
    assert two["loss_end"] == pytest.approx(one["loss_end"], abs=2e-4) and one["loss_end"] < one["loss_start"]
    wa = mx.load(str(tmp_path / "one" / "iter_1" / "adapter" / "adapters.safetensors"))
    wb = mx.load(str(tmp_path / "two" / "iter_1" / "adapter" / "adapters.safetensors"))
    assert set(wa) == set(wb)
    for name in wa:
        np.testing.assert_allclose(np.array(wb[name]), np.array(wa[name]), atol=2e-5, rtol=1e-3, err_msg=name)
    written = [{str(p.relative_to(tmp_path / n / "iter_1")) for p in (tmp_path / n / "iter_1").rglob("*")
                if p.is_file()} for n in ("one", "two")]
    assert written[1] == written[0] and "adapter/adapter.gguf" in written[1]  # what one process writes, nothing else
    assert two["pairs_held_out"] == one["pairs_held_out"] == 1
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], abs=2e-4)
