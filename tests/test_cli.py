"""The command line: help, clear errors for unsupported models and misuse (no model is loaded here)."""

import gguf
import numpy as np
import pytest
from click.testing import CliRunner
from gguf import GGMLQuantizationType as T

from srlm_lite.cli.main import cli

from test_models import _write_gguf


def test_help_lists_the_interface():
    result = CliRunner().invoke(cli, ["iterate", "--help"])
    assert result.exit_code == 0
    for flag in ("--config", "--model", "--out", "--iterations", "--prompts", "--samples", "--judge-samples",
                 "--max-tokens", "--seed", "--resume", "--json"):
        assert flag in result.output
    for command in ("iterate", "doctor", "export", "experiment"):
        assert command in CliRunner().invoke(cli, ["--help"]).output
    from srlm_lite.stages import STAGES
    assert set(STAGES) <= set(cli.commands)  # every stage can be run alone


def test_unsupported_model_gets_a_clear_error(tmp_path):
    model = _write_gguf(tmp_path / "g.gguf", "gpt2", {"token_embd.weight": (np.zeros((8, 32), np.float32), T.F32)})
    result = CliRunner().invoke(cli, ["iterate", "--model", str(model), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2  # an input error, like a usage error
    assert "architecture 'gpt2'" in result.output and "llama" in result.output
    # K-quants and Q5_x are dequantized now; a tensor type no loader can read is refused, naming it
    ints = tmp_path / "i32.gguf"
    writer = gguf.GGUFWriter(ints, "llama")
    writer.add_tensor("token_embd.weight", np.ones((8, 64), np.int32), raw_dtype=T.I32)
    for step in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file, writer.close):
        step()
    result = CliRunner().invoke(cli, ["iterate", "--model", str(ints), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 2 and "I32" in result.output and "Q4_K" in result.output


def _refused(args: list[str], code: int, message: str) -> None:
    """The command exits with `code` and says `message`, as a handled error: no traceback, no exception."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_misuse_is_refused(tmp_path):
    _refused(["iterate", "--resume"], 2, "--resume needs --out DIR")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    _refused(["iterate", "--out", str(tmp_path / "run")], 2, "pass --resume to continue it")
    _refused(["iterate", "--samples", "1", "--out", str(tmp_path / "r3")], 2, "responses.samples must be >= 2")
    _refused(["judge", "--run", str(tmp_path / "run")], 2, "config.toml")


def test_iterate_eval_table_shows_ifeval_counting_no_loop():
    from rich.console import Console

    from srlm_lite.cli.ui import eval_table

    evals = {"M0": {"ifeval": {"n": 271, "prompt_strict": 0.2, "prompt_loose": 0.221,
                               "prompt_loose_nondegenerate": 0.137, "degenerate": 0.373}},
             "M1": {"ifeval": {"n": 271, "prompt_strict": 0.2, "prompt_loose": 0.221}}}  # from before the field
    console = Console(width=200, record=True)
    console.print(eval_table(evals))
    text = console.export_text()
    assert "IFEval counting no loop (looping)" in text and "13.7% (37.3%)" in text
    assert text.count("22.1%") == 2


def test_eval_paired_compares_two_item_files(tmp_path):
    import json

    from srlm_lite.records import write_jsonl_atomic

    # 6 IFEval prompts: A passes 4 (two of them where B fails), B passes 2; families: keywords trained, case not
    ids = [["keywords:existence"]] * 3 + [["change_case:english_lowercase"]] * 3
    a = [{"key": k, "instruction_id_list": i, "loose": [p]} for k, (i, p) in
         enumerate(zip(ids, [True, True, False, True, True, False]))]
    b = [{"key": k, "instruction_id_list": i, "loose": [p]} for k, (i, p) in
         enumerate(zip(ids, [True, False, False, True, False, False]))]
    write_jsonl_atomic(tmp_path / "a.jsonl", a)
    write_jsonl_atomic(tmp_path / "b.jsonl", b)
    result = CliRunner().invoke(cli, ["eval", "paired", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                                      "--trained-families", "keywords", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert found["kind"] == "ifeval" and found["all"]["n"] == 6
    assert found["all"]["difference"] == pytest.approx(2 / 6, abs=1e-3)
    assert (found["all"]["a_only"], found["all"]["b_only"]) == (2, 0)
    assert found["seen"]["n"] == 3 and found["unseen"]["n"] == 3
    assert found["seen"]["difference"] == pytest.approx(1 / 3, abs=1e-3)
    assert "no_loop" not in found  # these items carry no answers to look for loops in
    bad = CliRunner().invoke(cli, ["eval", "paired", str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl")[:-6] + "x"])
    assert bad.exit_code == 2
