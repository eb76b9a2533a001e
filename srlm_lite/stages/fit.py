"""Prompts longer than the model's context: measured before they reach the engine, so that a stage skips them (and
counts them in its stats, under TOO_LONG) instead of failing in the middle of a run."""

from __future__ import annotations

TOO_LONG = "too_long_for_context"


def fits(engine, prompt: str, reserve: int) -> bool:
    """True when the templated `prompt` plus `reserve` generated tokens fit the engine's context; always True for an
    engine that does not say how long its context is."""
    n_ctx = getattr(engine, "context_length", None)
    if not n_ctx:
        return True
    return len(engine.encode(prompt)) + reserve <= n_ctx
