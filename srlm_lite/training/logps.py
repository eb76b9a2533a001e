"""Log-probabilities of response tokens under an MLX model: the quantity every objective and reward is made of."""

from __future__ import annotations

from ..mlx_runtime import mx


def sequence_logps(model, tokens: mx.array, prompt_lens: mx.array, lengths: mx.array) -> mx.array:
    """Sum of log p(token) over response tokens only (prompt and padding masked), one value per row."""
    logits = model(tokens[:, :-1]).astype(mx.float32)
    targets = tokens[:, 1:]
    token_logps = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1) - mx.logsumexp(logits, axis=-1)
    positions = mx.arange(targets.shape[1])[None, :]
    mask = (positions >= prompt_lens[:, None] - 1) & (positions < lengths[:, None] - 1)
    return (token_logps * mask).sum(axis=1)
