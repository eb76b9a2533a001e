"""Derived seeds: every sample's seed is a stable hash of (run seed, iteration, stage, prompt, sample, ...)."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str) -> int:
    """A stable 31-bit seed from (run seed, iteration, prompt index, sample index, ...)."""
    digest = hashlib.blake2b(repr(tuple(parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF
