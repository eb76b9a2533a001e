"""Preference objectives (pure functions of MLX arrays) with TRL's names and metric names.

`dpo_loss` is DPO (Rafailov et al. 2023) and its variants, chosen by `loss_type` as TRL does:
- "sigmoid": -log sigmoid(beta * h)                      (DPO)
- "ipo":     (h - 1 / (2 beta))^2                         (IPO, Azar et al. 2023)
- "hinge":   max(0, 1 - beta * h)                         (SLiC-HF, Zhao et al. 2023)
- "rpo":     sigmoid loss + rpo_alpha * NLL(chosen)       (iterative RPO, Pang et al. 2024)
where h = (pi_c - ref_c) - (pi_r - ref_r), the log-ratio margin. The NLL of the chosen answer is its negative
log-prob per response token (its summed log-prob divided by `chosen_lengths`).
"""

from __future__ import annotations

from ..mlx_runtime import mx
from . import LOSS_TYPES


def dpo_logits(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    """The implicit reward margin before beta: (pi_c - ref_c) - (pi_r - ref_r)."""
    return (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)


def preference_losses(logits, beta: float, loss_type: str = "sigmoid"):
    """Per-pair loss of the margin `logits` (h above); "rpo" is the sigmoid part only (its NLL term is added apart)."""
    if loss_type in ("sigmoid", "rpo"):
        return -log_sigmoid(beta * logits)
    if loss_type == "ipo":
        return (logits - 1.0 / (2.0 * beta)) ** 2
    if loss_type == "hinge":
        return mx.maximum(1.0 - beta * logits, 0.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; choose from {', '.join(LOSS_TYPES)}")


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta=0.1,
             *, loss_type: str = "sigmoid", chosen_lengths=None, rpo_alpha: float = 1.0, label_smoothing=None):
    """Mean loss over the batch and TRL-style metrics (still MLX scalars; call float() to read them).

    Rewards are beta * (pi - ref), detached. Accuracy is per pair (chosen reward > rejected reward), averaged:
    never computed from batch means. For "rpo", `chosen_lengths` (response tokens of each chosen answer) is needed.
    `label_smoothing` (a number or one per pair, sigmoid/rpo losses): see `smoothed_sigmoid_losses`.
    """
    logits = dpo_logits(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    if label_smoothing is not None and loss_type in ("sigmoid", "rpo"):
        losses = smoothed_sigmoid_losses(logits, beta, label_smoothing)
    else:
        losses = preference_losses(logits, beta, loss_type)
    chosen_rewards = mx.stop_gradient(beta * (policy_chosen_logps - reference_chosen_logps))
    rejected_rewards = mx.stop_gradient(beta * (policy_rejected_logps - reference_rejected_logps))
    metrics = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).astype(mx.float32).mean(),
        "logps/chosen": mx.stop_gradient(policy_chosen_logps).mean(),
        "logps/rejected": mx.stop_gradient(policy_rejected_logps).mean(),
    }
    if loss_type == "rpo":
        if chosen_lengths is None:
            raise ValueError("loss_type 'rpo' needs chosen_lengths (response tokens of each chosen answer)")
        nll = nll_per_token(policy_chosen_logps, chosen_lengths)
        losses = losses + rpo_alpha * nll
        metrics["nll_loss"] = mx.stop_gradient(nll).mean()
    return losses.mean(), metrics


def smoothed_sigmoid_losses(logits, beta: float, label_smoothing):
    """Per-pair DPO with label smoothing eps (the conservative/robust DPO form; CREAM's consistency weight C enters as
    eps = 1 - C): -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h), i.e. C * DPO(y+, y-) + (1 - C) * DPO(y-,
    y+). eps = 0 is plain DPO; eps = 0.5 makes the pair's order irrelevant."""
    eps = mx.array(label_smoothing, dtype=mx.float32)
    return -(1.0 - eps) * log_sigmoid(beta * logits) - eps * log_sigmoid(-beta * logits)


def nll_per_token(summed_logps, lengths):
    """Negative log-likelihood per token: -sum log p / number of tokens, per sequence."""
    return -summed_logps / mx.maximum(lengths.astype(mx.float32), 1.0)


def log_sigmoid(x):
    """Numerically stable log(sigmoid(x)) = -softplus(-x)."""
    return -mx.logaddexp(mx.zeros_like(x), -x)
