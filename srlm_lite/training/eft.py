"""`srlm-lite eft build`: evaluation fine-tuning data made as the paper made it.

The model judges both answers of each labelled pair with our rubric (a justification, then a score); a pair's
two verdicts are kept only when their score order agrees with the label. Each kept verdict becomes one SFT
example: the judge prompt -> the justification and `Score: X` (an integer, so the judge learns to write it).
Options balance the kept examples by score and by whether the preferred answer is the longer one, so the judge
is not taught "longer is better".
"""

from __future__ import annotations

import re
from typing import Callable

from ..config import JudgeConfig
from ..engines.base import Engine
from ..judging import WRITTEN_MODES, judge_format
from ..judging.scores import SCORE_MAX, SCORE_MIN
from ..seeds import derive_seed
from ..templates import load_template

_SCORE_LINE = re.compile(r"\n?\s*\**score\**\s*[:=\-].*$", re.IGNORECASE | re.DOTALL)


TARGETS = ("verdict", "score")


def verdict_text(justification: str, score: int) -> str:
    """The EFT target: the judge's justification (any score line it began dropped) and `Score: X` last."""
    body = _SCORE_LINE.sub("", justification).strip()
    return f"{body}\nScore: {score}" if body else f"Score: {score}"


def target_text(example: dict, target: str) -> str:
    """What SFT trains an EFT example's answer to be: `verdict` = justification + `Score: X` (the paper; what the
    `forced` and `sampled` judges write), `score` = `Score: X` alone (what the `expected` judge reads: the digit
    right after a forced `Score: `)."""
    if target not in TARGETS:
        raise ValueError(f"EFT target must be one of {', '.join(TARGETS)}, got {target!r}")
    return example["response"] if target == "verdict" else f"Score: {example['score']}"


def agreeing(score_preferred: int | None, score_other: int | None) -> bool:
    """A pair's verdicts teach the judge only when the preferred answer scored strictly higher."""
    return score_preferred is not None and score_other is not None and score_preferred > score_other


def balance_by_score(examples: list[dict]) -> list[dict]:
    """At most as many examples of each score as of the rarest score present (first ones kept, order kept)."""
    counts: dict[int, int] = {}
    for e in examples:
        counts[e["score"]] = counts.get(e["score"], 0) + 1
    if not counts:
        return []
    cap, seen, out = min(counts.values()), {}, []
    for e in examples:
        seen[e["score"]] = seen.get(e["score"], 0) + 1
        if seen[e["score"]] <= cap:
            out.append(e)
    return out


def balance_by_length(examples: list[dict]) -> list[dict]:
    """As many pairs where the preferred answer is the longer as where it is the shorter (first ones kept)."""
    groups: dict[bool, list[int]] = {True: [], False: []}
    for e in examples:
        if e["pair"] not in groups[e["preferred_longer"]]:
            groups[e["preferred_longer"]].append(e["pair"])
    n = min(len(groups[True]), len(groups[False]))
    keep = set(groups[True][:n]) | set(groups[False][:n])
    return [e for e in examples if e["pair"] in keep]


def build(engine: Engine, pairs: list[dict], config: JudgeConfig, *, seed: int = 0, balance_scores: bool = False,
          balance_lengths: bool = False, progress: Callable[[str, int, int], None] | None = None) -> tuple[list, dict]:
    """EFT examples from labelled pairs ({"index", "instruction", "response_a", "response_b", "preferred"}).

    Each of the J samples gives one verdict per answer; the sample's two verdicts are kept when they agree with
    the label. Returns (examples, stats)."""
    if not judge_format(config.mode).writes_text:
        raise ValueError(f"EFT examples need the judge's written justification: judge mode "
                         f"{' or '.join(repr(m) for m in WRITTEN_MODES)}, not {config.mode!r}")
    examples, agreed_pairs = [], set()
    for done, pair in enumerate(pairs, 1):
        other = "b" if pair["preferred"] == "a" else "a"
        judged = {side: _judge(engine, pair, side, config, seed) for side in ("a", "b")}
        longer = len(pair[f"response_{pair['preferred']}"]) > len(pair[f"response_{other}"])
        for j in range(len(judged["a"])):
            mine, theirs = judged[pair["preferred"]][j], judged[other][j]
            if not agreeing(mine["int_score"], theirs["int_score"]):
                continue
            agreed_pairs.add(pair["index"])
            for side in ("a", "b"):
                v = judged[side][j]
                examples.append({"prompt": load_template("judge").render(instruction=pair["instruction"],
                                                                         response=pair[f"response_{side}"]),
                                 "response": verdict_text(v["text"], v["int_score"]), "score": v["int_score"],
                                 "pair": pair["index"], "side": side, "sample": j,
                                 "preferred": side == pair["preferred"], "preferred_longer": longer})
        if progress:
            progress("eft pairs", done, len(pairs))
    kept = examples
    if balance_lengths:
        kept = balance_by_length(kept)
    if balance_scores:
        kept = balance_by_score(kept)
    stats = {"pairs": len(pairs), "pairs_agreeing": len(agreed_pairs), "examples_agreeing": len(examples),
             "examples": len(kept), "scores": _count(kept, "score"),
             "preferred_longer_pairs": len({e["pair"] for e in kept if e["preferred_longer"]}),
             "preferred_shorter_pairs": len({e["pair"] for e in kept if not e["preferred_longer"]})}
    return kept, stats


def _judge(engine: Engine, pair: dict, side: str, config: JudgeConfig, seed: int) -> list[dict]:
    seeds = [derive_seed(seed, "eft", pair["index"], side, j) for j in range(config.judge_samples)]
    found = judge_format(config.mode).score(engine, pair["instruction"], pair[f"response_{side}"], config, seeds)
    for v in found:
        v["int_score"] = None if v["score"] is None else min(SCORE_MAX, max(SCORE_MIN, round(v["score"])))
    return found


def _count(examples: list[dict], key: str) -> dict:
    counts: dict = {}
    for e in examples:
        counts[e[key]] = counts.get(e[key], 0) + 1
    return dict(sorted(counts.items()))
