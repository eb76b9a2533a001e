"""The command line: help, clear errors for unsupported models and misuse (no model is loaded here)."""

import numpy as np
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
    for command in ("iterate", "doctor", "instructions", "responses", "judge", "pairs", "train"):
        assert command in CliRunner().invoke(cli, ["--help"]).output


def test_unsupported_model_gets_a_clear_error(tmp_path):
    model = _write_gguf(tmp_path / "g.gguf", "gpt2", {"token_embd.weight": (np.zeros((8, 32), np.float32), T.F32)})
    result = CliRunner().invoke(cli, ["iterate", "--model", str(model), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "architecture 'gpt2'" in result.output and "llama" in result.output
    quant = _write_gguf(tmp_path / "q5.gguf", "llama", {"token_embd.weight": (np.ones((8, 64), np.float32), T.Q5_0)})
    result = CliRunner().invoke(cli, ["iterate", "--model", str(quant), "--out", str(tmp_path / "run2")])
    assert result.exit_code == 1 and "Q5_0" in result.output


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
    _refused(["iterate", "--out", str(tmp_path / "run")], 1, "pass --resume to continue it")
    _refused(["iterate", "--samples", "1", "--out", str(tmp_path / "r3")], 2, "responses.samples must be >= 2")
    _refused(["judge", "--run", str(tmp_path / "run")], 1, "config.toml")
