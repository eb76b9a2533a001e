"""The DPO objective (Rafailov et al. 2023), sigmoid form, with TRL's metric names: pure functions of MLX arrays."""

from __future__ import annotations

import mlx.core as mx


def dpo_logits(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    """The implicit reward margin before beta: (pi_c - ref_c) - (pi_r - ref_r)."""
    return (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta=0.1):
    """Mean sigmoid DPO loss over the batch and TRL-style metrics (still MLX scalars; call float() to read them).

    loss_i = -log sigmoid(beta * [(pi_c - ref_c) - (pi_r - ref_r)]); rewards are beta * (pi - ref), detached.
    Accuracy is per pair (chosen reward > rejected reward), averaged: never computed from batch means.
    """
    logits = dpo_logits(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    losses = -log_sigmoid(beta * logits)
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
    return losses.mean(), metrics


def log_sigmoid(x):
    """Numerically stable log(sigmoid(x)) = -softplus(-x)."""
    return -mx.logaddexp(mx.zeros_like(x), -x)
