"""The DPO loss against hand-computed values (design brief, section 4), and on a tiny model: ln 2, then falls."""

import math

import pytest

from srlm_lite.mlx_runtime import mx


from srlm_lite.training.losses import dpo_loss, log_sigmoid  # noqa: E402


def _loss(pc, pr, rc, rr, beta=0.1):
    loss, metrics = dpo_loss(mx.array(pc), mx.array(pr), mx.array(rc), mx.array(rr), beta)
    return float(loss), {k: float(v) for k, v in metrics.items()}


def test_policy_equal_to_reference_gives_ln2():
    loss, m = _loss([-5.0, -7.5], [-6.0, -2.0], [-5.0, -7.5], [-6.0, -2.0])
    assert loss == pytest.approx(0.693147, abs=1e-6)
    assert m["rewards/chosen"] == 0.0 and m["rewards/rejected"] == 0.0
    assert m["rewards/accuracies"] == 0.0  # a tie is not a win


def test_chosen_margin_two_with_beta_point_one():
    # margin 2 on the chosen side: -log sigmoid(0.2) = 0.598139
    loss, m = _loss([-3.0], [-5.0], [-5.0], [-5.0])
    assert loss == pytest.approx(0.598139, abs=1e-6)
    assert m["rewards/margins"] == pytest.approx(0.2, abs=1e-6)


def test_design_brief_example():
    loss, m = _loss([-3.0], [-3.0], [-4.0], [-3.0])
    assert loss == pytest.approx(0.644397, abs=1e-6)
    assert m["rewards/chosen"] == pytest.approx(0.1, abs=1e-6)
    assert m["rewards/rejected"] == pytest.approx(0.0, abs=1e-6)
    assert m["rewards/accuracies"] == 1.0
    assert m["logps/chosen"] == -3.0 and m["logps/rejected"] == -3.0


def test_accuracy_is_per_pair_not_from_batch_means():
    # pair 1: chosen reward +1.0 (win); pair 2: chosen -0.05 vs rejected 0 (loss). Batch means would say "win".
    loss, m = _loss([0.0, -0.5], [0.0, 0.0], [-10.0, 0.0], [0.0, 0.0], beta=0.1)
    assert m["rewards/accuracies"] == 0.5
    expected = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.05)))) / 2
    assert loss == pytest.approx(expected, abs=1e-6)


def test_log_sigmoid_is_stable_for_large_inputs():
    values = log_sigmoid(mx.array([-100.0, 0.0, 100.0])).tolist()
    assert values[0] == pytest.approx(-100.0, abs=1e-4)
    assert values[1] == pytest.approx(-math.log(2), abs=1e-6)
    assert values[2] == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_pushes_chosen_up():
    grad = mx.grad(lambda pc: dpo_loss(pc, mx.array([-4.0]), mx.array([-4.0]), mx.array([-4.0]), 0.1)[0])
    assert float(grad(mx.array([-4.0]))[0]) == pytest.approx(-0.05, abs=1e-6)  # -beta * sigmoid(0) = -0.05


# ---------------------------------------------------------------- variants (issue 6), hand-computed
def _variant(loss_type, pc, pr, rc, rr, beta=0.1, **kw):
    loss, metrics = dpo_loss(mx.array(pc), mx.array(pr), mx.array(rc), mx.array(rr), beta, loss_type=loss_type, **kw)
    return float(loss), {k: float(v) for k, v in metrics.items()}


def test_ipo_is_squared_distance_to_half_inverse_beta():
    # h = 2, 1/(2 beta) = 5: (2 - 5)^2 = 9; at h = 5 the loss is 0
    assert _variant("ipo", [-3.0], [-5.0], [-5.0], [-5.0])[0] == pytest.approx(9.0, abs=1e-6)
    assert _variant("ipo", [0.0], [-5.0], [0.0], [0.0])[0] == pytest.approx(0.0, abs=1e-6)


def test_hinge_is_zero_past_the_margin():
    assert _variant("hinge", [-3.0], [-5.0], [-5.0], [-5.0])[0] == pytest.approx(0.8, abs=1e-6)  # 1 - 0.2
    assert _variant("hinge", [0.0], [-20.0], [0.0], [0.0])[0] == pytest.approx(0.0, abs=1e-6)  # 1 - 2 < 0


def test_rpo_adds_per_token_nll_of_chosen():
    # sigmoid part 0.598139 (h = 2); chosen log-prob -3 over 3 tokens: NLL 1.0; alpha 0.5 -> + 0.5
    loss, m = _variant("rpo", [-3.0], [-5.0], [-5.0], [-5.0], chosen_lengths=mx.array([3]), rpo_alpha=0.5)
    assert loss == pytest.approx(0.598139 + 0.5, abs=1e-6)
    assert m["nll_loss"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="chosen_lengths"):
        _variant("rpo", [-3.0], [-5.0], [-5.0], [-5.0])


def test_rpo_gradient_pulls_chosen_up_more_than_dpo():
    def grad_for(loss_type):
        def f(pc):
            return dpo_loss(pc, mx.array([-4.0]), mx.array([-4.0]), mx.array([-4.0]), 0.1, loss_type=loss_type,
                            chosen_lengths=mx.array([4]))[0]
        return float(mx.grad(f)(mx.array([-4.0]))[0])

    assert grad_for("sigmoid") == pytest.approx(-0.05, abs=1e-6)
    assert grad_for("rpo") == pytest.approx(-0.05 - 0.25, abs=1e-6)  # d/dpc of -pc/4 is -1/4


def test_unknown_loss_type_is_an_error():
    with pytest.raises(ValueError, match="unknown loss_type"):
        _variant("kto", [-3.0], [-5.0], [-5.0], [-5.0])


def test_label_smoothed_dpo_against_hand_computed_values():
    from srlm_lite.training.losses import smoothed_sigmoid_losses

    h = mx.array([2.0, 2.0, 2.0, 0.0])
    eps = mx.array([0.0, 0.25, 0.5, 0.3])
    losses = smoothed_sigmoid_losses(h, 0.1, eps).tolist()
    # -log sigmoid(0.2) = 0.598139, -log sigmoid(-0.2) = 0.798139; at h = 0 both are ln 2 whatever eps is
    assert losses == pytest.approx([0.598139, 0.75 * 0.598139 + 0.25 * 0.798139, 0.698139, 0.693147], abs=1e-6)
    loss, metrics = dpo_loss(mx.array([-3.0]), mx.array([-3.0]), mx.array([-4.0]), mx.array([-3.0]), 0.1,
                             label_smoothing=mx.array([0.25]))
    # h = 1: 0.75 * -log sigmoid(0.1) + 0.25 * -log sigmoid(-0.1) = 0.75 * 0.644397 + 0.25 * 0.744397
    assert float(loss) == pytest.approx(0.669397, abs=1e-6)
    assert float(metrics["rewards/chosen"]) == pytest.approx(0.1) and float(metrics["rewards/rejected"]) == 0.0
