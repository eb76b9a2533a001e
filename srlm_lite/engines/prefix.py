"""KV-cache prefix reuse on a llama.cpp context, shared by the engine's log-probs and the multi-sequence sampler."""

from __future__ import annotations

from typing import Sequence


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def eval_reusing_prefix(llm, tokens: list[int]) -> None:
    """Evaluate `tokens` on `llm` (sequence 0), reusing the KV cache of the longest prefix already evaluated. At
    least the last token is decoded, so the logits that follow are this sequence's."""
    llm.n_tokens = min(common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens), len(tokens) - 1)
    llm.eval(tokens[llm.n_tokens:])


def pack_units(units: list[tuple], max_sequences: int, n_ctx: int, max_tokens: int) -> list[list[tuple]]:
    """Consecutive (request, prompt tokens, seeds) units packed into groups decoded together: at most
    `max_sequences` seeds per group, and prompts plus every candidate at `max_tokens` within `n_ctx`."""
    groups: list[list[tuple]] = []
    seqs = cells = 0
    for unit in units:
        need_seqs, need_cells = len(unit[2]), len(unit[1]) + len(unit[2]) * max_tokens
        if groups and seqs + need_seqs <= max_sequences and cells + need_cells <= n_ctx:
            groups[-1].append(unit)
            seqs, cells = seqs + need_seqs, cells + need_cells
        else:
            groups.append([unit])
            seqs, cells = need_seqs, need_cells
    return groups
