"""Nothing lost, on the real model: a small `iterate` killed with SIGKILL at random points in every stage (training
included) and resumed each time with `--resume`; a full disk (a small tmpfs) in the middle of a run.

The kill suite compares the finished run with an uninterrupted run of the same seed. It asserts what must hold
(no record lost or duplicated; every record written before a kill kept as it was; the first process's records equal
the uninterrupted run's; training resumed from its checkpoint gives the same log and adapter bit for bit whenever its
pairs are the same) and measures what llama.cpp does not promise (records sampled or judged after a restart, whose
logits depend on the KV cache the process had). The short version (1 seed, 1 iteration, 8 kills) runs with the real
tests; the long one (3 seeds, 2 iterations, 30 kills) with `pytest -m long tests/test_faults_real.py`. Each writes
one JSON line of figures to stdout, and appends it to $SRLM_FAULT_REPORT when that is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srlm_lite.records import read_jsonl

pytestmark = [pytest.mark.real, pytest.mark.slow]

CONFIG = """\
iterations = {iterations}
seed = {seed}
[instructions]
num_prompts = 2
max_attempts = 8
max_tokens = 48
[responses]
samples = 3
max_tokens = 24
[judge]
mode = "expected"
[train]
batch_size = 1
epochs = 2
checkpoint_every = 1
lora_layers = 4
"""
RECORD_FILES = ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "rewards.jsonl", "pairs.jsonl",
                "reference_logps.jsonl", "train_log.jsonl")
# where a kill is aimed: stage -> (the file whose appearance opens it, the file that closes it, the most seconds the
# random delay is drawn from). The window is shrunk to what the stage took in the uninterrupted run of the same seed
# (`stage_windows`), so that the kill lands inside the stage on a faster machine too. The kill comes after the
# delay, or as the closing file appears if that is sooner.
TARGETS = {
    "instructions": (None, "instructions.jsonl", 8.0),  # from the start: process start-up and model loading too
    "responses": ("instructions.jsonl", "responses.jsonl", 1.0),
    "judge": ("responses.jsonl", "judgments.jsonl", 5.0),
    "reward": ("judgments.jsonl", "rewards.jsonl", 0.2),
    "pairs": ("rewards.jsonl", "pairs.jsonl", 0.05),
    "reference": ("pairs.jsonl", "reference_logps.jsonl", 3.0),  # MLX loads the model, then the reference pass
    "steps": ("train_log.jsonl.partial", "train_log.jsonl", 1.5),
    "end": ("train_log.jsonl", "manifest.json", 1.0),  # evaluation, adapter saved and exported, manifest
}
SHORT = [(1, name) for name in TARGETS]
LONG = SHORT[:4] + [(1, "reference"), (1, "steps"), (1, "end"), (2, "responses"), (2, "judge"), (2, "steps")]


def _cli(config: Path, run: Path, resume: bool, log: Path) -> subprocess.Popen:
    """One `iterate` process in its own process group (so the kill takes all of it), stderr to `log`."""
    args = [sys.executable, "-m", "srlm_lite", "iterate", "--config", str(config), "--out", str(run)]
    with open(log, "w") as err:
        return subprocess.Popen(args + (["--resume"] if resume else []), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


def _snapshot(run: Path) -> dict[tuple[str, str], dict]:
    """Every record on disk now, finished files and partial ones, by (iteration/file, id)."""
    found = {}
    for path in sorted(run.glob("iter_*/*.jsonl*")):
        name = path.name.removesuffix(".partial")
        if name in RECORD_FILES:
            for record in read_jsonl(path, skip_bad=True):
                found[(f"{path.parent.name}/{name}", str(record.get("id")))] = _strip(record)
    return found


def _stage_now(run: Path, iterations: int) -> str:
    """Where the run stands on disk: the first stage whose output is not finished."""
    steps = [("instructions", "instructions.jsonl"), ("responses", "responses.jsonl"), ("judge", "judgments.jsonl"),
             ("reward", "rewards.jsonl"), ("pairs", "pairs.jsonl"), ("reference", "reference_logps.jsonl"), ("steps", "train_log.jsonl"),
             ("end", "train_summary.json"), ("manifest", "manifest.json")]
    if not (run / "config.toml").exists():
        return "startup"
    for t in range(1, iterations + 1):
        for stage, name in steps:
            if not (run / f"iter_{t}" / name).exists():
                return f"{t}:{stage}"
    return "run manifest"


def _kill(proc, run: Path, t: int, target: str, delay: float, iterations: int, log: Path) -> dict | None:
    """Wait for the target's opening file, then `delay` seconds, then SIGKILL the run's process group. None when the
    process ended first (it must have ended well)."""
    opener, closer, _ = TARGETS[target]
    marker = run / f"iter_{t}" / opener if opener else run / "config.toml"
    if opener is None and t > 1:
        marker = run / f"iter_{t - 1}" / "manifest.json"
    deadline = None
    while proc.poll() is None:
        if deadline is None and marker.exists():
            deadline = time.monotonic() + delay
        if deadline is not None and (time.monotonic() >= deadline or (run / f"iter_{t}" / closer).exists()):
            snapshot = _snapshot(run)
            landed = _stage_now(run, iterations)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"target": f"{t}:{target}", "delay": round(delay, 2), "landed": landed, "snapshot": snapshot}
        time.sleep(0.02)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return None


def stage_windows(reference: Path, iterations: int) -> dict[tuple[int, str], float]:
    """Per (iteration, target): the delay window, at most TARGETS' and at most 80% of the seconds between the opening
    and the closing file's modification in the uninterrupted run `reference` (where both files are there to tell)."""
    windows = {}
    for t in range(1, iterations + 1):
        for target, (opener, closer, most) in TARGETS.items():
            first = reference / "config.toml" if opener is None else reference / f"iter_{t}" / opener
            last = reference / f"iter_{t}" / closer
            if first.exists() and last.exists():
                most = min(most, 0.8 * max(0.0, last.stat().st_mtime - first.stat().st_mtime))
            windows[(t, target)] = most
    return windows


def killed_run(config: Path, run: Path, plan: list, rng: random.Random, windows: dict) -> tuple[list[dict], int]:
    """Start the run, kill it at each target of `plan` (resuming after each kill), then let it finish. Returns the
    kills and how many resumed processes said they took over the lock a killed one left."""
    kills, logs = [], []
    iterations = max(t for t, _ in windows)
    for t, target in plan:
        logs.append(run.parent / f"{run.name}.stderr{len(logs)}")
        proc = _cli(config, run, bool(kills), logs[-1])
        kill = _kill(proc, run, t, target, rng.uniform(0.0, windows[(t, target)]), iterations, logs[-1])
        if kill is None:
            break  # the run finished before this target was reached
        kills.append(kill)
    else:
        logs.append(run.parent / f"{run.name}.stderr{len(logs)}")
        proc = _cli(config, run, True, logs[-1])
        assert proc.wait(timeout=3600) == 0, logs[-1].read_text()[-3000:]
    assert "Traceback" not in "".join(log.read_text() for log in logs)
    return kills, sum("took over the lock" in log.read_text() for log in logs)


def _records(run: Path, t: int, name: str) -> list[dict]:
    return [_strip(r) for r in read_jsonl(run / f"iter_{t}" / name)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _integrity(run: Path, t: int) -> dict:
    """Lost and duplicated records of iteration t, from what each stage's input says must be there."""
    from srlm_lite.stages.pairs import build_pairs

    ins, res, jud, rew, pairs, ref, log = (_records(run, t, name) for name in RECORD_FILES)
    summary = json.loads((run / f"iter_{t}" / "train_summary.json").read_text())
    expected = {
        "instructions.jsonl": [f"it{t}-a{a:04d}" for a in range(len(ins))],
        "responses.jsonl": [f"{r['id']}-r{k}" for r in ins if r["kept"] for k in range(3)],
        "judgments.jsonl": [r["id"] for r in res],
        "rewards.jsonl": [r["id"] for r in res],
        "pairs.jsonl": [p["id"] for p in build_pairs(res, rew)[0]],
        "reference_logps.jsonl": [p["id"] for p in pairs],
        "train_log.jsonl": [f"step-{s}" for s in range(1, 2 * summary["pairs_trained"] + 1)],  # 2 epochs, batch 1
    }
    lost = duplicated = 0
    in_order = summary["pairs_skipped"] == 0
    for name, records in zip(RECORD_FILES, (ins, res, jud, rew, pairs, ref, log)):
        ids = [r["id"] for r in records]
        duplicated += len(ids) - len(set(ids))
        lost += len(set(expected[name]) - set(ids))
        in_order = in_order and ids == expected[name]
    pure = pairs == [_strip(p) for p in build_pairs(res, rew)[0]]  # pairs are a pure function of their inputs
    return {"lost": lost, "duplicated": duplicated, "in_order": in_order and pure,
            "records": sum(map(len, (ins, res, jud, rew, pairs, ref, log)))}


def _against_reference(run: Path, reference: Path, t: int) -> dict:
    """Records equal to / different from the uninterrupted run, per file; training compared where pairs agree."""
    found = {}
    for name in RECORD_FILES:
        mine = {r["id"]: r for r in _records(run, t, name)}
        theirs = {r["id"]: r for r in _records(reference, t, name)}
        found[name] = {"equal": sum(mine.get(i) == r for i, r in theirs.items()),
                       "differ": sum(i in mine and mine[i] != r for i, r in theirs.items()),
                       "only_one_side": len(set(mine) ^ set(theirs))}
    mine = {r["id"]: r["score"] for r in _records(run, t, "judgments.jsonl")}
    theirs = {r["id"]: r["score"] for r in _records(reference, t, "judgments.jsonl")}
    shared = [i for i in mine if i in theirs and mine[i] is not None and theirs[i] is not None]
    found["judge_max_abs_diff"] = max((abs(mine[i] - theirs[i]) for i in shared), default=0.0)
    texts = [[(p["id"], p["prompt"], p["chosen"], p["rejected"]) for p in _records(side, t, "pairs.jsonl")]
             for side in (run, reference)]
    adapter = f"iter_{t}/adapter/adapters.safetensors"
    found["pair_texts_equal"] = texts[0] == texts[1]  # what training reads (the scores may differ a little)
    found["train_equal"] = (_records(run, t, "reference_logps.jsonl") == _records(reference, t, "reference_logps.jsonl")
                            and _records(run, t, "train_log.jsonl") == _records(reference, t, "train_log.jsonl")
                            and _sha(run / adapter) == _sha(reference / adapter))
    return found


def fault_suite(tmp: Path, seeds: list[int], iterations: int, plan: list) -> dict:
    """The whole measurement: per seed an uninterrupted run and a run killed at every target of `plan`."""
    report = {"seeds": seeds, "iterations": iterations, "kills": 0, "survived": 0, "landed": {}, "lost": 0,
              "duplicated": 0, "kept_unchanged": 0, "kept_changed": 0, "lock_takeovers": 0, "per_seed": []}
    for seed in seeds:
        config = tmp / f"seed{seed}.toml"
        config.write_text(CONFIG.format(iterations=iterations, seed=seed))
        reference, run = tmp / f"reference{seed}", tmp / f"killed{seed}"
        done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--config", str(config), "--out",
                               str(reference)], capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, done.stderr[-3000:]
        kills, takeovers = killed_run(config, run, plan, random.Random(seed), stage_windows(reference, iterations))
        final = _snapshot(run)
        first = kills[0]["snapshot"] if kills else {}
        reference_records = _snapshot(reference)
        assert all(reference_records.get(key) == record for key, record in first.items()), \
            "what the first process wrote equals the uninterrupted run"
        seed_report = {"seed": seed, "kills": [{k: v for k, v in kill.items() if k != "snapshot"} for kill in kills],
                       "iterations": []}
        for kill in kills:
            report["landed"][kill["landed"]] = report["landed"].get(kill["landed"], 0) + 1
            report["kept_unchanged"] += sum(final.get(key) == record for key, record in kill["snapshot"].items())
            report["kept_changed"] += sum(final.get(key) != record for key, record in kill["snapshot"].items())
        for t in range(1, iterations + 1):
            integrity = _integrity(run, t)
            report["lost"] += integrity["lost"]
            report["duplicated"] += integrity["duplicated"]
            seed_report["iterations"].append({"iteration": t, **integrity, **_against_reference(run, reference, t)})
        report["kills"] += len(kills)
        report["survived"] += len(kills) if (run / "manifest.json").exists() else 0
        report["lock_takeovers"] += takeovers
        report["per_seed"].append(seed_report)
        shutil.rmtree(reference, ignore_errors=True)
    return report


def _publish(report: dict) -> None:
    line = json.dumps(report, sort_keys=True)
    print(line)
    if os.environ.get("SRLM_FAULT_REPORT"):
        with open(os.environ["SRLM_FAULT_REPORT"], "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _assert_nothing_lost(report: dict, min_kills: int) -> None:
    assert report["kills"] >= min_kills and report["survived"] == report["kills"]
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["kept_changed"] == 0 and report["kept_unchanged"] > 0
    for seed in report["per_seed"]:
        for it in seed["iterations"]:
            assert it["in_order"], f"seed {seed['seed']} iteration {it['iteration']}: ids out of order"
            if it["pair_texts_equal"]:
                assert it["train_equal"], f"seed {seed['seed']} iteration {it['iteration']}: same pairs, other training"


def test_killed_at_random_points_in_every_stage_nothing_is_lost(tmp_path, real_model_path):
    """The short version (CI): one seed, one iteration, a kill aimed at each stage."""
    report = fault_suite(tmp_path, [1], 1, SHORT)
    _publish(report)
    _assert_nothing_lost(report, min_kills=5)
    stages = {name.split(":")[1] for name in report["landed"] if ":" in name}
    assert {"instructions", "responses", "judge"} <= stages and stages & {"reference", "steps", "end"}


@pytest.mark.long
def test_long_fault_suite(tmp_path, real_model_path):
    """The long version: 3 seeds x 2 iterations, 10 kills each; `pytest -m long tests/test_faults_real.py`."""
    report = fault_suite(tmp_path, [1, 2, 3], 2, LONG)
    _publish(report)
    _assert_nothing_lost(report, min_kills=20)


# ---------------------------------------------------------------------------------------------- a full disk

def _leave_free(disk: Path, filler: Path, left: int) -> None:
    """Grow or shrink `filler` so that about `left` bytes stay free on the tmpfs at `disk`."""
    stat = os.statvfs(disk)
    current = filler.stat().st_size if filler.exists() else 0
    size = max(0, current + stat.f_bavail * stat.f_frsize - left)
    with open(filler, "ab") as fh:
        fh.truncate(size)
        if size > current:
            os.posix_fallocate(fh.fileno(), current, size - current)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs, unmounted at teardown; skipped where this process may not mount one (then the full disk is
    covered by ENOSPC injected at the write layer, in test_faults.py)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_run_clearly_and_resume_completes(tmp_path, small_disk, real_model_path):
    """Twice out of space (first among the records, then at the training checkpoint), each time one clear line and
    exit 1; once space is freed, --resume finishes with every record written before kept and none lost."""
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(iterations=1, seed=5))
    run, filler = small_disk / "run", small_disk / "filler"
    snapshots, outcomes = [], []
    for left in (16 << 10, 2 << 20, None):  # 16 KiB, 2 MiB, then all the space back
        if left is None:
            filler.unlink()
        else:
            _leave_free(small_disk, filler, left)
        done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--config", str(config), "--out",
                               str(run)] + (["--resume"] if snapshots else []), capture_output=True, text=True,
                              timeout=1800)
        outcomes.append((done.returncode, done.stderr))
        snapshots.append(_snapshot(run))
    for code, stderr in outcomes[:2]:
        assert code == 1, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "no space left on the device" in errors[0] and "--resume" in stderr
        assert "Traceback" not in stderr
    assert outcomes[2][0] == 0, outcomes[2][1][-3000:]
    assert 0 < len(snapshots[0]) < len(snapshots[1])  # each attempt got further
    final = snapshots[2]
    assert all(final.get(key) == record for snap in snapshots[:2] for key, record in snap.items())
    integrity = _integrity(run, 1)
    assert integrity["lost"] == 0 and integrity["duplicated"] == 0 and integrity["in_order"]
    assert not list(run.rglob(".*.tmp")) and not list(run.rglob(".*.safetensors"))  # no temporary file left
    _publish({"full_disk": {"attempts": len(outcomes), "exit_codes": [c for c, _ in outcomes],
                            "records_before_each_stop": [len(s) for s in snapshots[:2]], **integrity}})
