"""DPO training on a tiny random MLX model: masked sequence log-probs, loss starts at ln 2 and falls."""

import math

import numpy as np
import pytest

from srlm_lite.mlx_runtime import mx


from srlm_lite.config import TrainConfig  # noqa: E402
from srlm_lite.training.lora import attach_lora  # noqa: E402
from srlm_lite.records import read_jsonl  # noqa: E402
from srlm_lite.training.dpo import (Objective, TokenizedPair, _batch_loss, collate, evaluate, make_batches,  # noqa: E402
                             reference_logps, sequence_logps, train_dpo)
from tiny_models import synthetic_pairs  # noqa: E402


def _manual_logps(model, row: list[int], prompt_len: int) -> float:
    logits = np.array(model(mx.array([row]))[0].astype(mx.float32), dtype=np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return sum(logp[i - 1, row[i]] for i in range(prompt_len, len(row)))


def test_sequence_logps_sum_response_tokens_only(tiny_model):
    pairs = [TokenizedPair("a", [1, 5, 9, 12, 40, 41, 2], [1, 5, 9, 12, 77, 2], 4, 4),
             TokenizedPair("b", [1, 6, 30, 31, 32, 2], [1, 6, 50, 2], 2, 2)]
    tokens, prompt_lens, lengths = collate(pairs, pad_id=0)
    assert tokens.shape == (4, 7)
    got = sequence_logps(tiny_model, tokens, prompt_lens, lengths).tolist()
    rows = [(p.chosen, p.chosen_prompt_len) for p in pairs] + [(p.rejected, p.rejected_prompt_len) for p in pairs]
    want = [_manual_logps(tiny_model, row, n) for row, n in rows]
    assert got == pytest.approx(want, abs=1e-4)
    # changing a prompt token changes nothing it is not conditioned on; changing padding changes nothing at all
    padded_other = mx.where(tokens == 0, mx.array(99), tokens)
    assert sequence_logps(tiny_model, padded_other, prompt_lens, lengths).tolist() == pytest.approx(got, abs=1e-5)


def test_dpo_on_tiny_model_starts_at_ln2_and_falls(tiny_model, tmp_path):
    mx.random.seed(1)
    attach_lora(tiny_model, rank=4, scale=10.0, num_layers=-1)
    pairs = synthetic_pairs(12, np.random.default_rng(0))
    config = TrainConfig(learning_rate=1e-2, epochs=4, batch_size=3, beta=0.1)
    reference = reference_logps(tiny_model, pairs, tmp_path, batch_size=config.batch_size, pad_id=0)  # as `run`
    assert len(read_jsonl(tmp_path / "reference_logps.jsonl")) == 12
    records = train_dpo(tiny_model, pairs, reference, config, tmp_path, pad_id=0, seed=0)
    assert records[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 0
    # the same batches as the reference pass: exactly zero rewards, no rounding noise to read as accuracy
    assert records[0]["rewards/margins"] == 0.0 and records[0]["rewards/accuracies"] == 0.0
    end = evaluate(tiny_model, pairs, reference, 4, 0, Objective.from_config(config))
    assert end["loss"] < 0.6 and end["rewards/accuracies"] > 0.8 and end["rewards/margins"] > 0
    log = read_jsonl(tmp_path / "train_log.jsonl")
    assert len(log) == 16 and {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                                "rewards/accuracies", "logps/chosen", "logps/rejected"} <= log[0].keys()


def test_batches_are_length_bucketed():
    rng = np.random.default_rng(3)
    pairs = synthetic_pairs(20, rng)
    batches = make_batches(pairs, 4)
    lengths = [max(p.length for p in b) for b in batches]
    assert lengths == sorted(lengths) and sum(len(b) for b in batches) == 20


def test_length_normalize_divides_policy_and_reference_by_response_tokens(tiny_model):
    pairs = [TokenizedPair("a", [1, 5, 9, 40, 41, 42, 2], [1, 5, 9, 77, 2], 3, 3)]  # 4 and 2 response tokens
    reference = {"a": (-20.0, -6.0)}
    chosen, rejected = (float(v[0]) for v in _logps(tiny_model, pairs))
    for normalize, (nc, nr) in ((False, (1, 1)), (True, (4, 2))):
        loss, m = _batch_loss(tiny_model, pairs, reference, 0, Objective(beta=0.5, length_normalize=normalize))
        h = (chosen / nc + 20.0 / nc) - (rejected / nr + 6.0 / nr)
        assert float(loss) == pytest.approx(math.log1p(math.exp(-0.5 * h)), abs=1e-4)
        assert float(m["logps/chosen"]) == pytest.approx(chosen / nc, abs=1e-4)


def test_rpo_objective_reports_nll_per_chosen_token(tiny_model):
    pairs = [TokenizedPair("a", [1, 5, 9, 40, 41, 42, 2], [1, 5, 9, 77, 2], 3, 3)]
    chosen, _ = (float(v[0]) for v in _logps(tiny_model, pairs))
    loss, m = _batch_loss(tiny_model, pairs, {"a": (chosen, -6.0)}, 0, Objective(loss_type="rpo", rpo_alpha=1.0))
    assert float(m["nll_loss"]) == pytest.approx(-chosen / 4, abs=1e-4)


def _logps(model, pairs):
    from srlm_lite.training.dpo import batch_logps

    return batch_logps(model, pairs, 0)
