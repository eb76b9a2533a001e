"""The server engine against a fake OpenAI-compatible server on 127.0.0.1: requests, concurrency, retries and
errors, the API key's secrecy, log-probs in both shapes and the judge's fallback, echo, handing adapters over,
and a local server process killed and restarted. The parsing and backoff math is tested as pure functions."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fake_openai import DIGITS, FakeOpenAI
from srlm_lite.config import JudgeConfig, RunConfig, to_toml
from srlm_lite.engines import EngineOptions, open_engine
from srlm_lite.engines.base import LogprobsUnavailable
from srlm_lite.engines.handoff import AdapterNotServed, model_alias
from srlm_lite.engines.local_server import LocalServer, server_env
from srlm_lite.engines.openai_http import ServerError, backoff_delay, is_transient_status
from srlm_lite.engines.openai_parse import candidate_logprobs, echoed_logprobs, top_alternatives
from srlm_lite.records import read_jsonl
from srlm_lite.runs import ModelSpec

KEY = "sk-test-7f3a9c1e5b2d4068a1f0e9d8c7b6a5f4"
FAKE_SERVER = Path(__file__).with_name("fake_openai.py")


def options(url: str, **kw) -> EngineOptions:
    return EngineOptions(backend="openai", base_url=url, **kw)


def engine_for(fake: FakeOpenAI, model: Path, **kw):
    engine = open_engine(ModelSpec(model), options(fake.base_url, **kw))
    engine.client.sleep = lambda seconds: None  # retries without waiting
    return engine


# ---------------------------------------------------------------------------------------------- pure functions

def test_backoff_doubles_up_to_a_cap_and_honours_retry_after():
    assert [backoff_delay(a) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(20) == 30.0
    assert backoff_delay(3, retry_after=0.0) == 0.0 and backoff_delay(0, retry_after=500) == 30.0
    assert [s for s in (400, 401, 404, 408, 429, 500, 503, 599) if is_transient_status(s)] == [408, 429, 500, 503,
                                                                                               599]


def test_candidates_matched_by_id_then_text_and_missing_ones_get_minus_infinity():
    alternatives = [("3", 51, -0.5), ("Ġ4", 52, -1.0), (None, 53, -2.0)]
    found = candidate_logprobs(alternatives, {"3": None, " 4": 52, "5": 53, "0": 40})
    assert found == {"3": -0.5, " 4": -1.0, "5": -2.0, "0": -math.inf}


def test_both_logprob_shapes_are_read_and_a_missing_one_is_said():
    legacy = {"choices": [{"text": "", "logprobs": {"top_logprobs": [{"1": -1.0, "2": -0.2}]}}]}
    content = {"choices": [{"text": "", "logprobs": {"content": [
        {"token": "1", "logprob": -1.0, "top_logprobs": [{"id": 7, "token": "1", "logprob": -1.0}]}]}}]}
    assert top_alternatives(legacy) == [("1", None, -1.0), ("2", None, -0.2)]
    assert top_alternatives(content) == [("1", 7, -1.0)]
    with pytest.raises(LogprobsUnavailable):
        top_alternatives({"choices": [{"text": "x"}]})


def test_echoed_logprobs_take_the_continuation_and_refuse_a_merged_boundary():
    answer = {"choices": [{"logprobs": {"tokens": ["<s>", "Hi", " the", "re", "!"],
                                        "token_logprobs": [None, -1.0, -2.0, -3.0, -4.0]}}],
              "usage": {"completion_tokens": 1}}
    assert echoed_logprobs(answer, " there", 2) == [-2.0, -3.0]
    with pytest.raises(ValueError, match="boundary"):
        echoed_logprobs(answer, "here", 1)


# ---------------------------------------------------------------------------------------------- requests

def test_completions_carry_the_prompt_seed_and_sampler_settings(real_model_path):
    with FakeOpenAI() as fake:
        engine = engine_for(fake, real_model_path)
        prompt = engine.chat_prompt("Say hi")
        out = engine.complete(prompt, max_tokens=20, temperature=0.7, top_p=0.9, seed=11, stop=["</task>"])
    body = fake.requests[-1]["body"]
    assert prompt.startswith("<|im_start|>") and body["prompt"] == prompt
    assert (body["seed"], body["temperature"], body["top_p"], body["max_tokens"]) == (11, 0.7, 0.9, 20)
    assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["repeat_penalty"] == 1.0  # no hidden filters
    assert body["stop"] == ["</task>"] and body["model"] == "srlm-base"
    assert out.text.startswith("answer 11") and out.n_tokens == 3 and out.finish_reason == "stop"


def test_complete_many_is_concurrent_bounded_and_in_order(real_model_path):
    with FakeOpenAI(delay_by_seed=True) as fake:
        engine = engine_for(fake, real_model_path, concurrency=3)
        requests = [(f"p{i}", [i * 10 + k for k in range(4)]) for i in range(4)]
        outs = engine.complete_many(requests, max_tokens=8, temperature=0.7, top_p=0.9)
    assert [[o.text.split()[1] for o in group] for group in outs] == [[str(i * 10 + k) for k in range(4)]
                                                                     for i in range(4)]
    assert 1 < fake.max_in_flight <= 3


@pytest.mark.parametrize("failures", [[503, 503], [429], ["drop"], [500, "drop", 502]])
def test_transient_failures_are_retried(real_model_path, failures):
    with FakeOpenAI() as fake:
        engine = engine_for(fake, real_model_path, max_retries=4)
        fake.failures = list(failures)
        out = engine.complete("hello", max_tokens=4, temperature=0.0, top_p=1.0, seed=3)
    assert out.text.startswith("answer 3")
    assert sum(r["path"] == "/v1/completions" for r in fake.requests) == len(failures) + 1


def test_persistent_failure_gives_up_and_other_errors_are_reported_at_once(real_model_path):
    with FakeOpenAI() as fake:
        engine = engine_for(fake, real_model_path, max_retries=2)
        fake.failures = [503] * 10
        with pytest.raises(ServerError, match="HTTP 503; gave up after 3 attempts"):
            engine.complete("x", max_tokens=4, temperature=0.0, top_p=1.0, seed=0)
        fake.failures, before = [], len(fake.requests)
        with pytest.raises(ServerError, match="HTTP 400.*max_tokens too large"):
            engine.complete("x", max_tokens=999, temperature=0.0, top_p=1.0, seed=0)
        assert len(fake.requests) == before + 1  # a 400 is not retried


def test_connection_refused_is_retried_then_reported(real_model_path):
    with FakeOpenAI() as fake:
        engine = engine_for(fake, real_model_path, max_retries=2)
    delays = []
    engine.client.on_retry = lambda reason, attempt, delay: delays.append((reason, delay))
    with pytest.raises(ServerError, match="cannot reach the server.*gave up after 3 attempts"):
        engine.complete("x", max_tokens=4, temperature=0.0, top_p=1.0, seed=0)
    assert [d for _, d in delays] == [0.5, 1.0] and "Connection refused" in delays[0][0]


def test_missing_base_url_is_a_clear_error(real_model_path):
    with pytest.raises(ValueError, match="--base-url"):
        open_engine(ModelSpec(real_model_path), EngineOptions(backend="openai"))


# ---------------------------------------------------------------------------------------------- the API key

def test_api_key_is_sent_from_the_environment_and_never_shown(real_model_path, monkeypatch):
    with FakeOpenAI(api_key=KEY) as fake:
        monkeypatch.delenv("SRLM_TEST_KEY", raising=False)
        with pytest.raises(ServerError, match="SRLM_TEST_KEY") as missing:
            engine_for(fake, real_model_path, api_key_env="SRLM_TEST_KEY")
        monkeypatch.setenv("SRLM_TEST_KEY", "wrong-" + KEY)
        with pytest.raises(ServerError, match=r"HTTP 401 \(check the key in \$SRLM_TEST_KEY\)") as refused:
            engine_for(fake, real_model_path, api_key_env="SRLM_TEST_KEY", server="other")  # GET /models
        monkeypatch.setenv("SRLM_TEST_KEY", KEY)
        engine = engine_for(fake, real_model_path, api_key_env="SRLM_TEST_KEY")
        engine.complete("x", max_tokens=4, temperature=0.0, top_p=1.0, seed=0)
    assert fake.requests[-1]["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(missing.value) and KEY not in str(refused.value)
    assert KEY not in repr(engine.options) and KEY not in engine.model_id


def test_the_run_directory_never_holds_the_key(real_model_path, tmp_path, monkeypatch):
    """Stages 1-3 through the server engine with a key: nothing in the folder (records, config) holds it."""
    from srlm_lite.stages.instructions import self_instruct
    from srlm_lite.stages.judge import judge_responses
    from srlm_lite.stages.responses import sample_candidates

    monkeypatch.setenv("SRLM_TEST_KEY", KEY)
    config = RunConfig()
    config.model.backend, config.model.api_key_env = "openai", "SRLM_TEST_KEY"
    (tmp_path / "config.toml").write_text(to_toml(config))
    with FakeOpenAI(api_key=KEY) as fake:
        engine = engine_for(fake, real_model_path, api_key_env="SRLM_TEST_KEY")
        small = replace(config.instructions, num_prompts=2, max_attempts=3)
        self_instruct(engine, tmp_path, small, seeds=["Name a colour.", "Write a haiku about rain."], previous=[],
                      run_seed=0, iteration=1)
        prompts = [{"id": "p0", "prompt": "Explain tides."}]
        sample_candidates(engine, prompts, tmp_path, replace(config.responses, samples=2), run_seed=0, iteration=1)
        judge_responses(engine, read_jsonl(tmp_path / "responses.jsonl"), tmp_path, config.judge, run_seed=0,
                        iteration=1)
    assert (tmp_path / "judgments.jsonl").exists() and "SRLM_TEST_KEY" in (tmp_path / "config.toml").read_text()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


# ---------------------------------------------------------------------------------------------- log-probs

@pytest.mark.parametrize("shape,server", [("legacy", "llama-cpp-python"), ("content", "mlx-lm")])
def test_next_token_logprobs_in_either_shape(real_model_path, shape, server):
    served = "/models/smollm2" if server == "mlx-lm" else ""
    with FakeOpenAI(logprobs=shape) as fake:
        engine = engine_for(fake, real_model_path, server=server, served_model=served)
        found = engine.next_token_logprobs("Score: ", ["0", "3", "5", "9"])
    body = fake.requests[-1]["body"]
    assert found == {"0": DIGITS["0"], "3": DIGITS["3"], "5": DIGITS["5"], "9": -math.inf}
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    if server == "mlx-lm":
        assert body["logprobs"] is True and body["top_logprobs"] == 11 and body["model"] == served
    else:
        assert body["logprobs"] == 20


def test_judge_stage_falls_back_to_the_sampled_judge_without_logprobs(real_model_path, tmp_path):
    from srlm_lite.stages.judge import judge_responses

    responses = [{"id": f"p0-r{k}", "prompt_id": "p0", "prompt": "Explain tides.", "response": "Tides rise."}
                 for k in range(2)]
    said = []
    with FakeOpenAI(logprobs=None) as fake:
        engine = engine_for(fake, real_model_path, concurrency=2)
        with pytest.raises(LogprobsUnavailable):
            engine.next_token_logprobs("Score: ", ["1"])
        stats = judge_responses(engine, responses, tmp_path, JudgeConfig(mode="expected", judge_samples=2),
                                run_seed=0, iteration=1, say=said.append)
    assert len(said) == 1 and "falling back to the sampled judge" in said[0]
    records = read_jsonl(tmp_path / "judgments.jsonl")
    assert [r["id"] for r in records] == ["p0-r0", "p0-r1"] and stats["judged"] == 2
    assert all(len(r["judgments"]) == 2 and r["judgments"][0]["text"].startswith("answer") for r in records)
    assert stats["expected"] == 0  # every verdict is a sampled one


def test_continuation_logprobs_need_a_server_that_echoes(real_model_path):
    with FakeOpenAI() as fake:
        mlx = engine_for(fake, real_model_path, server="mlx-lm", served_model="/m")
        with pytest.raises(NotImplementedError, match="do not echo"):
            mlx.continuation_logprobs("abc", "de")


# ---------------------------------------------------------------------------------------------- adapters

@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, real_model_path):
    """A small random LoRA on SmolLM2's shapes (rank 2, top 2 blocks), saved with its GGUF export."""
    from srlm_lite.mlx_runtime import mx
    from srlm_lite.models.mlx_model import load_mlx_model
    from srlm_lite.training.lora import attach_lora, export_gguf_lora, save_adapter

    mx.random.seed(1)
    model = load_mlx_model(real_model_path, dequantize=False)
    config = attach_lora(model, rank=2, scale=4.0, num_layers=2)
    folder = tmp_path_factory.mktemp("adapter")
    save_adapter(model, folder, config)
    export_gguf_lora(folder, folder / "adapter.gguf")
    return folder


def test_fixed_lora_server_must_have_been_started_with_the_adapter(real_model_path, adapter_dir):
    spec = ModelSpec(real_model_path, adapter_dir, "M1")
    with FakeOpenAI() as fake:
        with pytest.raises(AdapterNotServed, match="--lora_path") as refused:
            open_engine(spec, options(fake.base_url))
        fake.models.append(model_alias(spec))
        engine = open_engine(spec, options(fake.base_url))
        engine.complete("x", max_tokens=2, temperature=0.0, top_p=1.0, seed=0)
    assert str(adapter_dir / "adapter.gguf") in str(refused.value) and "--resume" in str(refused.value)
    assert fake.requests[-1]["body"]["model"] == model_alias(spec) != "srlm-base"


def test_other_servers_say_which_file_to_load(real_model_path, adapter_dir):
    with FakeOpenAI() as fake:
        with pytest.raises(AdapterNotServed, match="adapter.gguf") as refused:
            open_engine(ModelSpec(real_model_path, adapter_dir, "M1"), options(fake.base_url, server="other"))
    assert "ADAPTER" in str(refused.value)


def test_vllm_loads_the_peft_adapter_by_name_and_llama_server_picks_it_per_request(real_model_path, adapter_dir,
                                                                                    monkeypatch, tmp_path):
    monkeypatch.setenv("SRLM_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(real_model_path, adapter_dir, "M1")
    with FakeOpenAI() as fake:
        engine = open_engine(spec, options(fake.base_url, server="vllm"))
        load = next(r for r in fake.requests if r["path"] == "/v1/load_lora_adapter")
        assert load["body"]["lora_name"] == model_alias(spec) == engine.fields["model"]
        assert (Path(load["body"]["lora_path"]) / "adapter_model.safetensors").exists()
    gguf = str((adapter_dir / "adapter.gguf").resolve())
    with FakeOpenAI(loras=[{"id": 0, "path": "/other/adapter.gguf", "scale": 1.0},
                           {"id": 1, "path": gguf, "scale": 0.0}]) as fake:
        engine = open_engine(spec, options(fake.base_url, server="llama-server"))
        assert engine.fields["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
        base = open_engine(ModelSpec(real_model_path), options(fake.base_url, server="llama-server"))
        assert base.fields["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]


# ---------------------------------------------------------------------------------------------- local servers

def test_server_env_passes_the_key_only_in_the_environment(monkeypatch):
    monkeypatch.setenv("SRLM_TEST_KEY", KEY)
    monkeypatch.setenv("PORT", "1")  # llama_cpp.server would listen there instead of on --port
    env = server_env("llama-cpp-python", "SRLM_TEST_KEY")
    assert env["API_KEY"] == KEY and "PORT" not in env and env["SRLM_SERVER_PARENT"] == str(os.getpid())
    assert "API_KEY" not in server_env("mlx-lm", "SRLM_TEST_KEY")


def test_a_local_server_killed_mid_stage_is_restarted_and_nothing_is_lost(real_model_path, tmp_path):
    """The engine owns a server process; it is killed between two requests; the next request's retry finds it dead,
    starts it again (on the same port), and the stage's records come out complete, each once."""
    from srlm_lite.stages.responses import sample_candidates

    from srlm_lite.engines.openai import OpenAIEngine

    server = LocalServer("other", [sys.executable, str(FAKE_SERVER)], tmp_path / "server.log").start()
    engine = OpenAIEngine(ModelSpec(real_model_path), options("", server="other", concurrency=2), local=server)
    engine.client.sleep = lambda seconds: time.sleep(min(seconds, 0.2))
    first_port = server.port
    calls = {"n": 0}
    original = engine.complete

    def complete_and_kill(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # from outside, as a crash would: SIGKILL, not reaped here
            os.kill(server.process.pid, signal.SIGKILL)
        return original(*args, **kwargs)

    engine.complete = complete_and_kill
    prompts = [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(4)]
    try:
        stats = sample_candidates(engine, prompts, tmp_path, RunConfig().responses, run_seed=0, iteration=1)
    finally:
        engine.close()
    ids = [r["id"] for r in read_jsonl(tmp_path / "responses.jsonl")]
    assert ids == [f"p{i}-r{k}" for i in range(4) for k in range(4)] and stats["responses"] == 16
    log = (tmp_path / "server.log").read_text()
    assert server.starts == 2 and server.port == first_port and "restarting" in log
    assert log.count("POST /v1/completions") >= 16 and not server.alive()


def test_a_server_that_cannot_start_says_why(tmp_path):
    broken = LocalServer("other", [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"],
                         tmp_path / "server.log")
    with pytest.raises(RuntimeError, match="(?s)exited with code 3.*no model here"):
        broken.start()


def test_serve_local_refuses_servers_it_cannot_start(real_model_path):
    with pytest.raises(ValueError, match="--serve-local starts llama-cpp-python or mlx-lm"):
        open_engine(ModelSpec(real_model_path), EngineOptions(backend="openai", serve_local=True, server="vllm"))


def test_server_main_refuses_unknown_servers():
    done = subprocess.run([sys.executable, "-m", "srlm_lite.engines.server_main", "vllm"], capture_output=True,
                          text=True)
    assert done.returncode != 0 and "llama-cpp-python|mlx-lm" in done.stderr


# ---------------------------------------------------------------------------------------------- eval commands

def test_eval_commands_run_through_the_server(real_model_path, tmp_path, monkeypatch):
    """`eval judge` and `eval ifeval` with `--backend openai --base-url`: every judged response and every answer is a
    request to the server, with the key from the environment; nothing runs in-process."""
    import json

    from click.testing import CliRunner

    from srlm_lite.cli.main import cli

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"instruction": f"Question {i}?", "response_a": f"Answer {i}.",
                                         "response_b": "No idea.", "preferred": "a"}) + "\n" for i in range(3)))
    prompts = tmp_path / "ifeval.jsonl"
    prompts.write_text(json.dumps({"key": 1, "prompt": "Write a sentence about rain.", "kwargs": [{}],
                                   "instruction_id_list": ["detectable_format:json_format"]}) + "\n")
    monkeypatch.setenv("SRLM_TEST_KEY", KEY)
    server = ["--backend", "openai", "--api-key-env", "SRLM_TEST_KEY", "--concurrency", "2", "--json"]
    with FakeOpenAI(api_key=KEY) as fake:
        judged = CliRunner().invoke(cli, ["eval", "judge", "--pairs", str(pairs), "--judge-samples", "1",
                                          "--base-url", fake.base_url, *server])
        judge_requests = len(fake.requests)
        answered = CliRunner().invoke(cli, ["eval", "ifeval", "--prompts", str(prompts), "--max-tokens", "8",
                                            "--base-url", fake.base_url, *server])
    assert judged.exit_code == 0, judged.output
    assert answered.exit_code == 0, answered.output
    assert json.loads(judged.output.strip().splitlines()[-1])["n"] == 3
    assert json.loads(answered.output.strip().splitlines()[-1])["n"] == 1
    completions = [r for r in fake.requests if r["path"] == "/v1/completions"]
    assert judge_requests >= 6 and len(completions) >= 7  # 3 pairs x 2 responses judged, 1 IFEval answer
    assert all(r["authorization"] == f"Bearer {KEY}" for r in completions)
    assert KEY not in judged.output + answered.output


def test_bench_servers_measures_each_concurrency_against_the_in_process_engine(real_model_path, monkeypatch):
    """`bench --only servers` on a fake server (no timing asserted): one figure per server and concurrency, the
    in-process engine as the baseline, the concurrency really applied, the server closed; a server that cannot start
    gives a skipped row, not a failed bench."""
    from fakes import ScriptedEngine

    from srlm_lite.engines.openai import OpenAIEngine
    from srlm_lite.tools import bench_servers
    from srlm_lite.tools.bench import figure

    opened, closed = [], []

    class Served(OpenAIEngine):
        def close(self):
            closed.append(self.kind.name)
            super().close()

    def fake_open(model, opts):
        opened.append((opts.backend, opts.server if opts.backend == "openai" else None))
        if opts.backend != "openai":
            return ScriptedEngine()
        if opts.server == "mlx-lm":
            raise RuntimeError("the mlx-lm server exited with code 1 while starting")
        return Served(model, replace(opts, serve_local=False, base_url=fake.base_url))

    monkeypatch.setattr(bench_servers, "open_engine", fake_open)
    with FakeOpenAI(delay_by_seed=True) as fake:
        rows = bench_servers.bench_servers(real_model_path, ["Name a colour.", "Explain tides."], 4, 8,
                                           lambda line: None, figure)
    assert [r["name"] for r in rows] == ["server_llama-cpp-python_c1", "server_llama-cpp-python_c2",
                                         "server_llama-cpp-python_c4", "server_mlx-lm"]
    assert all(r["baseline"] and r["ours"] and r["tokens"] > 0 for r in rows[:3])
    assert [r["concurrency"] for r in rows[:3]] == [1, 2, 4] and 2 < fake.max_in_flight <= 4
    assert "exited with code 1" in rows[3]["skipped"] and rows[3]["ours"] is None
    assert closed == ["llama-cpp-python"] and ("openai", "llama-cpp-python") in opened
    completions = [r for r in fake.requests if r["path"] == "/v1/completions"]
    assert len(completions) == 3 * 2 * 4 and all(r["body"]["temperature"] == 0.7 for r in completions)
