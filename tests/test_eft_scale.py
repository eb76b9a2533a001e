"""EFT at scale: the three builders from labels (pure), truncation, the prefix-cached score loss against the exact one
on tiny random models, the trainer on a tiny model, and the whole path on the real model (marked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from srlm_lite.mlx_runtime import mx, nn, tree_flatten
from srlm_lite.training import eft
from srlm_lite.training import eft_scale as es

PAIRS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_prefs"


def _pair(index: int, preferred: str, len_a: int, len_b: int) -> dict:
    return {"index": index, "instruction": f"q{index}", "response_a": "a" * len_a, "response_b": "b" * len_b,
            "preferred": preferred}


def _render(instruction: str, response: str) -> tuple[str, bool]:
    return f"{instruction}|{response[:3]}", len(response) > 3


PAIRS = [_pair(0, "a", 10, 2),  # preferred longer
         _pair(1, "b", 1, 5),  # preferred longer
         _pair(2, "a", 2, 9),  # preferred shorter
         _pair(3, "b", 4, 4),  # equal length
         _pair(4, "b", 7, 3)]  # preferred shorter


def test_label_examples_give_the_preferred_answer_the_higher_score():
    examples = eft.label_examples(PAIRS, _render)
    assert len(examples) == 10
    by = {(e["pair"], e["side"]): e for e in examples}
    assert by[(0, "a")]["score"] == 4 and by[(0, "b")]["score"] == 2
    assert by[(1, "b")]["score"] == 4 and by[(1, "a")]["score"] == 2
    assert by[(0, "a")]["response"] == "Score: 4" and by[(0, "a")]["prompt"] == "q0|aaa"
    assert by[(0, "a")]["truncated"] is True and by[(0, "b")]["truncated"] is False
    assert by[(2, "a")]["preferred"] and not by[(2, "b")]["preferred"]
    assert [by[(i, "a")]["preferred_longer"] for i in range(5)] == [True, True, False, None, False]
    assert {e["score"] for e in eft.label_examples(PAIRS, _render, (5, 1))} == {5, 1}
    with pytest.raises(ValueError):
        eft.label_examples(PAIRS, _render, (2, 2))


def test_length_balanced_keeps_as_many_shorter_as_longer_preferred_pairs_alternating():
    kept = eft.length_balanced(PAIRS)
    assert [p["index"] for p in kept] == [0, 2, 1, 4]  # two of each kind, alternating; the equal-length pair dropped
    three_longer = PAIRS + [_pair(5, "a", 9, 1)]
    assert [p["index"] for p in eft.length_balanced(three_longer)] == [0, 2, 1, 4]  # the third longer one left out
    only_longer = [PAIRS[0], PAIRS[1]]
    assert eft.length_balanced(only_longer) == []


def test_agreeing_examples_keep_pairs_whose_rounded_scores_agree_with_the_label():
    scores = {(0, "a"): 3.6, (0, "b"): 2.4,  # 4 > 2: kept, targets 4 and 2
              (1, "a"): 2.6, (1, "b"): 3.4,  # 3 vs 3: a tie after rounding, dropped
              (2, "a"): 1.2, (2, "b"): 3.9,  # disagrees with the label: dropped
              (3, "a"): 0.1, (3, "b"): 4.7,  # 0 < 5, preferred b: kept
              (4, "a"): 2.0}  # (4, "b") missing: dropped
    examples = eft.agreeing_examples(PAIRS, scores, _render)
    assert [(e["pair"], e["side"], e["score"]) for e in examples] == [(0, "a", 4), (0, "b", 2), (3, "a", 0),
                                                                     (3, "b", 5)]
    examples, stats = eft.from_labels(PAIRS, "agreeing", _render, scores)
    assert stats["pairs"] == 5 and stats["pairs_kept"] == 2 and stats["examples"] == 4
    assert stats["preferred_longer_pairs"] == 1 and stats["equal_length_pairs"] == 1
    assert stats["scores"] == {0: 1, 2: 1, 4: 1, 5: 1}
    assert es.own_accuracy(PAIRS, scores) == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)


def test_from_labels_ways_and_their_counts():
    _, labels = eft.from_labels(PAIRS, "labels", _render)
    assert labels["examples"] == 10 and labels["pairs_kept"] == 5 and labels["truncated_examples"] == 6
    assert labels["scores"] == {2: 5, 4: 5}
    _, balanced = eft.from_labels(PAIRS, "balanced", _render)
    assert balanced["examples"] == 8 and balanced["preferred_longer_pairs"] == balanced["preferred_shorter_pairs"] == 2
    with pytest.raises(ValueError, match="needs the model's scores"):
        eft.from_labels(PAIRS, "agreeing", _render)
    with pytest.raises(ValueError, match="one of"):
        eft.from_labels(PAIRS, "random", _render)


class WordTokenizer:
    """Words as tokens (enough for truncation)."""

    def encode(self, text, special=False, add_bos=False):
        return text.split(" ")

    def decode(self, ids):
        return " ".join(ids)


def test_truncate_cuts_at_the_token_cap_and_marks_it():
    assert es.truncate(WordTokenizer(), "one two three", 3) == ("one two three", False)
    assert es.truncate(WordTokenizer(), "one two three four", 2) == ("one two" + eft.TRUNCATION_MARK, True)
    assert es.truncate(WordTokenizer(), "one two three four", 0) == ("one two three four", False)


def test_shared_prefix_leaves_a_token_of_each():
    assert es.shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 7]]) == 2
    assert es.shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert es.shared_prefix([[1, 2], [3, 4]]) == 0
    assert es.shared_prefix([]) == 0


def test_load_score_examples_reads_the_score_or_the_response(tmp_path):
    path = tmp_path / "eft.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"prompt": "p", "score": 3, "response": "Score: 3"},
                                                       {"prompt": "q", "response": "Fine answer.\nScore: 4"}]) + "\n")
    assert [(e["prompt"], e["score"]) for e in es.load_score_examples(path)] == [("p", 3), ("q", 4)]
    path.write_text(json.dumps({"prompt": "p", "response": "no score"}) + "\n")
    with pytest.raises(ValueError, match=":1: an EFT example needs"):
        es.load_score_examples(path)


# ------------------------------------------------------------------------------------- tiny random models
DIGITS = list(range(32, 38))  # stand-ins for the digit tokens in a tiny vocabulary
PREFIX = list(range(5, 30))


def _examples(n: int = 6) -> list[es.ScoreExample]:
    return [es.ScoreExample(str(i), tuple(PREFIX + [40 + i] * (2 + i % 4)), DIGITS[i % 6], i % 6) for i in range(n)]


def _random_lora(model, layers: int = -1, seed: int = 1):
    from srlm_lite.training.lora import attach_lora

    model.freeze()
    attach_lora(model, rank=4, scale=2.0, num_layers=layers)
    mx.random.seed(seed)  # lora_b is zero when attached: make the adapter change the model, prefix included
    model.load_weights([(k, 0.05 * mx.random.normal(v.shape)) for k, v in
                        tree_flatten(model.trainable_parameters())], strict=False)
    return model


def test_prefix_cached_loss_equals_the_exact_loss_at_step_0(tiny_model):
    model = _random_lora(tiny_model)
    batch = _examples()
    exact, exact_metrics = es.score_loss(model, batch, None, DIGITS)
    cached, cached_metrics = es.score_loss(model, batch, es.PrefixKV(model, PREFIX, 8), DIGITS)
    assert float(cached) == pytest.approx(float(exact), rel=1e-5)
    assert float(cached_metrics["digit_accuracy"]) == float(exact_metrics["digit_accuracy"])
    # and a stale prefix (computed before the LoRA changed) gives another loss: the comparison can fail
    stale = es.PrefixKV(model, PREFIX, 8)
    model.load_weights([(k, 2 * v) for k, v in tree_flatten(model.trainable_parameters())], strict=False)
    assert float(es.score_loss(model, batch, stale, DIGITS)[0]) != pytest.approx(
        float(es.score_loss(model, batch, None, DIGITS)[0]), rel=1e-4)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "phi3", "gemma3"])
def test_last_position_logits_equal_the_whole_model_on_every_architecture(arch):
    from tiny_models import tiny_model

    model = _random_lora(tiny_model(arch))
    batch = _examples(3)
    full = mx.stack([model(mx.array([list(e.tokens)]))[0, -1] for e in batch])
    assert es._head(model) is not None  # the fast head is used, and agrees with the model's own
    assert mx.allclose(es.last_logits(model, batch, None), full, atol=1e-4).item()
    assert mx.allclose(es.last_logits(model, batch, es.PrefixKV(model, PREFIX, 0)), full, atol=1e-4).item()


def test_expected_scores_on_the_prefix_cache_equal_the_whole_prompts(tiny_model):
    import math

    model = _random_lora(tiny_model)
    prompts = [list(e.tokens) for e in _examples(5)]
    found = es.expected_scores(model, prompts, DIGITS, batch_size=2, min_mass=0.0)
    for tokens, score in zip(prompts, found):
        logits = model(mx.array([tokens]))[0, -1]
        p = [math.exp(float(logits[d] - mx.logsumexp(logits))) for d in DIGITS]
        assert score == pytest.approx(sum(i * q for i, q in enumerate(p)) / sum(p), abs=1e-3)
    assert es.expected_scores(model, prompts, DIGITS)[0] is None  # the digits hold too little mass: no score


def test_prefix_refresh_schedule(tiny_model):
    prefix = es.PrefixKV(_random_lora(tiny_model), PREFIX, 3)
    for step in range(1, 10):
        prefix.after_step(step)
    assert prefix.refreshes == 1 + 3  # at the start, then after steps 3, 6, 9
    assert len(prefix.kv) == 2 and prefix.kv[0][0].shape[2] == len(PREFIX)


def test_lora_on_top_blocks_gets_gradients_only_there(tiny_model):
    model = _random_lora(tiny_model, layers=1)
    grads = nn.value_and_grad(model, lambda m, b: es.score_loss(m, b, None, DIGITS)[0])(model, _examples())[1]
    names = [k for k, _ in tree_flatten(grads)]
    assert names and all(k.startswith("model.layers.1.") for k in names)


@pytest.mark.parametrize("refresh_every", [0, 2])
def test_fit_lowers_the_score_loss_on_a_tiny_model(tiny_model, tmp_path, refresh_every):
    from srlm_lite.config import EFTTrainConfig

    model = _random_lora(tiny_model, seed=2)
    data = _examples(8)
    before = float(es.score_loss(model, data, None, DIGITS)[0])
    config = EFTTrainConfig(learning_rate=1e-2, epochs=6, batch_size=4, refresh_every=refresh_every)
    records, prefix = es.fit(model, data, config, DIGITS, tmp_path / "log.jsonl")
    after = float(es.score_loss(model, data, None, DIGITS)[0])
    assert len(records) == 12 and after < before - 0.5
    assert (prefix is None) == (refresh_every == 0)
    assert all(r["tail_tokens"] < r["tokens"] for r in records) == (refresh_every > 0)
    summary = es.speed_summary(records, prefix)
    assert summary["steps"] == 12 and summary["prefix_tokens"] == (len(PREFIX) if refresh_every else 0)
    assert summary["prompt_tokens"] == 6 * sum(len(e.tokens) for e in data)


def test_checkpoint_interval_falls_on_refresh_steps():
    from srlm_lite.config import EFTTrainConfig

    assert es.checkpoint_interval(EFTTrainConfig(checkpoint_every=64, refresh_every=8)) == 64
    assert es.checkpoint_interval(EFTTrainConfig(checkpoint_every=5, refresh_every=8)) == 8
    assert es.checkpoint_interval(EFTTrainConfig(checkpoint_every=10, refresh_every=4)) == 12
    assert es.checkpoint_interval(EFTTrainConfig(checkpoint_every=5, refresh_every=0)) == 5
    assert es.checkpoint_interval(EFTTrainConfig(checkpoint_every=0, refresh_every=8)) == 0


class Interrupted(Exception):
    pass


def _fit_from(seed_model: int, tmp_path, name: str, stop_at: int | None = None, checkpoint=None, fingerprint=""):
    from tiny_models import tiny_model

    from srlm_lite.config import EFTTrainConfig

    model = _random_lora(tiny_model("llama", seed=seed_model), seed=3)
    config = EFTTrainConfig(learning_rate=1e-2, epochs=3, batch_size=2, refresh_every=2, checkpoint_every=3)

    def stop(stage, step, total):
        if step == stop_at:
            raise Interrupted

    records, _ = es.fit(model, _examples(8), config, DIGITS, tmp_path / f"{name}.jsonl", stop, checkpoint=checkpoint,
                        fingerprint=fingerprint)
    return model, records


def test_a_killed_fit_resumes_from_its_checkpoint_and_ends_where_the_whole_run_ends(tmp_path):
    whole, whole_records = _fit_from(0, tmp_path, "whole")
    checkpoint = tmp_path / es.CHECKPOINT_FILE
    with pytest.raises(Interrupted):  # 12 steps; checkpoints every 4 (3 rounded up to the refresh interval 2)
        _fit_from(0, tmp_path, "killed", stop_at=7, checkpoint=checkpoint)
    assert mx.load(str(checkpoint), return_metadata=True)[1]["step"] == "4"
    resumed, records = _fit_from(0, tmp_path, "killed", checkpoint=checkpoint)
    assert [r["step"] for r in records] == list(range(1, 13))
    assert records[-1]["loss"] == pytest.approx(whole_records[-1]["loss"], rel=1e-4)
    for (name, a), (_, b) in zip(tree_flatten(whole.trainable_parameters()),
                                 tree_flatten(resumed.trainable_parameters())):
        assert mx.allclose(a, b, atol=1e-5).item(), name
    # the checkpoint of a run on another base model (`train` gives its path) is not resumed: a fresh start
    _, other_records = _fit_from(0, tmp_path, "other", checkpoint=checkpoint, fingerprint="other.gguf")
    assert [r["step"] for r in other_records] == list(range(1, 13))
    assert other_records[0]["loss"] == pytest.approx(whole_records[0]["loss"], rel=1e-5)


@pytest.mark.parametrize("args, refused", [
    (["--from-labels", "--samples", "5", "--target", "score"], "--samples, --target do nothing with --from-labels"),
    (["--way", "balanced"], "--way does nothing without --from-labels"),
    (["--label-scores", "5", "1", "--max-response-tokens", "64"],
     "--max-response-tokens, --label-scores do nothing without --from-labels"),
])
def test_eft_build_refuses_the_options_its_way_would_ignore(tmp_path, args, refused):
    """An option of the other way is refused with a usage error (exit 2) before any model is opened, rather than
    silently dropped; the defaults of the other way's options are never counted as given."""
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli

    (tmp_path / "pairs.jsonl").write_text(json.dumps({"instruction": "Q?", "response_a": "A", "response_b": "B",
                                                      "preferred": "a"}) + "\n")
    result = CliRunner().invoke(cli, ["eft", "build", "--pairs", str(tmp_path / "pairs.jsonl"), "--out",
                                      str(tmp_path / "out.jsonl"), *args])
    assert result.exit_code == 2 and refused in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out.jsonl").exists()


# -------------------------------------------------------------------------------------------- real model
@pytest.mark.real
def test_eft_build_from_labels_writes_the_prompts_the_judge_reads(tmp_path, real_model_path):
    """The two label ways through the CLI with the embedded model's tokenizer only (no model pass): the written
    prompt is the judge's own user message (`rubric.judge_prompt` on an engine with that tokenizer), long answers
    cut at --max-response-tokens, --label-scores applied, the balanced file alternating."""
    from click.testing import CliRunner

    from srlm_lite.cli.main import cli
    from srlm_lite.judging import rubric
    from srlm_lite.models.tokenizer import ChatTokenizer

    pairs = [{"instruction": f"Question {i}?", "response_a": "Short answer." if i % 3 else "Long answer. " * 40,
              "response_b": "A somewhat longer answer here." if i % 2 else "No.", "preferred": "ab"[i % 2]}
             for i in range(8)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    written = {}
    for way, extra in (("labels", []), ("balanced", ["--label-scores", "5", "1"])):
        result = CliRunner().invoke(cli, ["eft", "build", "--pairs", str(tmp_path / "pairs.jsonl"), "--from-labels",
                                          "--way", way, "--max-response-tokens", "16", "--json", "--out",
                                          str(tmp_path / f"{way}.jsonl"), *extra])
        assert result.exit_code == 0, result.output
        written[way] = [json.loads(line) for line in (tmp_path / f"{way}.jsonl").read_text().splitlines()]
    tokenizer = ChatTokenizer.from_gguf(real_model_path)
    judge = es.TokenizerJudge(tokenizer)
    first = written["labels"][0]  # pair 0: answer a is long (cut), preferred a
    assert first["truncated"] and first["score"] == 4 and eft.TRUNCATION_MARK in first["prompt"]
    assert rubric.judge_prompt(judge, "Question 1?", "A somewhat longer answer here.") == \
        tokenizer.prompt_text(written["labels"][3]["prompt"])
    assert es.judge_tokens(tokenizer, written["labels"][3]["prompt"]) == tokenizer.encode(
        rubric.judge_prompt(judge, "Question 1?", "A somewhat longer answer here.") + "Score: ")
    assert {e["score"] for e in written["balanced"]} == {5, 1}
    kinds = [e["preferred_longer"] for e in written["balanced"][::2]]
    assert kinds and kinds == [True, False] * (len(kinds) // 2)


@pytest.mark.real
@pytest.mark.slow
def test_eft_build_train_and_judge_on_the_real_model(tmp_path, real_model_path):
    """The three ways built from labelled pairs, a few training steps on the embedded model, and the trained
    judge measured on 4 dev pairs by `eval judge --adapter`; the adapter is what `iterate --init` starts from."""
    if not (PAIRS_DIR / "train.jsonl").exists():
        pytest.skip("../shared/data is not beside the project")
    cli = [sys.executable, "-m", "srlm_lite"]

    def run(*args: str) -> dict:
        done = subprocess.run(cli + list(args) + ["--json"], capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    stats = {way: run("eft", "build", "--pairs", str(PAIRS_DIR / "train.jsonl"), "--from-labels", "--way", way,
                      "--limit", "12", "--max-response-tokens", "64", "--out", str(tmp_path / f"{way}.jsonl"))
             for way in eft.WAYS}
    assert stats["labels"]["examples"] == 24 and stats["labels"]["truncated_examples"] > 0
    assert stats["balanced"]["preferred_longer_pairs"] == stats["balanced"]["preferred_shorter_pairs"] > 0
    assert 0 <= stats["agreeing"]["pairs_kept"] <= 12 and stats["agreeing"]["judge_accuracy"] is not None
    written = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert any(eft.TRUNCATION_MARK in e["prompt"] for e in written)

    summary = run("eft", "train", "--eft", str(tmp_path / "labels.jsonl"), "--out", str(tmp_path / "judge"),
                  "--limit", "16", "--batch-size", "4", "--learning-rate", "1e-3", "--refresh-every", "2")
    assert summary["steps"] == 4 and summary["prefix_tokens"] > 150 and summary["prefix_refreshes"] == 3
    adapter = tmp_path / "judge" / "adapter"
    assert (adapter / "adapters.safetensors").exists() and (adapter / "adapter.gguf").exists()

    from srlm_lite.config import RunConfig
    from srlm_lite.runs import start_adapter

    assert start_adapter(RunConfig(init=str(tmp_path / "judge"))) == adapter
    raw = run("eval", "judge", "--pairs", str(PAIRS_DIR / "dev.jsonl"), "--limit", "4", "--judge-mode", "expected",
              "--out", str(tmp_path / "raw_items.jsonl"))
    taught = run("eval", "judge", "--pairs", str(PAIRS_DIR / "dev.jsonl"), "--limit", "4", "--judge-mode", "expected",
                 "--adapter", str(tmp_path / "judge"), "--out", str(tmp_path / "taught_items.jsonl"))
    assert taught["n"] == raw["n"] == 4 and 0 <= taught["accuracy"] <= 1
    raw_scores, taught_scores = ([(i["score_a"], i["score_b"]) for i in map(json.loads, p.read_text().splitlines())]
                                 for p in (tmp_path / "raw_items.jsonl", tmp_path / "taught_items.jsonl"))
    assert raw_scores != taught_scores  # the adapter reached llama.cpp's judge
