"""`srlm-lite eft build`: evaluation fine-tuning data made as the paper made it.

The model judges both answers of each labelled pair with our rubric (a justification, then a score); a pair's
two verdicts are kept only when their score order agrees with the label. Each kept verdict becomes one SFT
example: the judge prompt -> the justification and `Score: X` (an integer, so the judge learns to write it).
Options balance the kept examples by score and by whether the preferred answer is the longer one, so the judge
is not taught "longer is better".

At scale (`eft build --from-labels`, trained by `eft train`, see `eft_scale.py`) the examples are `Score: X` alone,
made from the labels in one of three ways (`WAYS`, pure builders below): the model's own `expected` scores kept where
they agree with the label, label-conditioned targets, or those on a length-balanced subset of the pairs.
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


# ---------------------------------------------------------------- EFT from labels alone (at scale, see eft_scale.py)
# Three ways to turn labelled pairs into `Score: X` examples for the `expected` judge (pure: the caller renders the
# judge prompt, `render(instruction, response) -> (prompt, truncated)`, and for `agreeing` gives the model's scores).
WAYS = ("agreeing", "labels", "balanced")
LABEL_SCORES = (4, 2)  # label-conditioned targets: (the preferred answer, the other)
MAX_RESPONSE_TOKENS = 256  # answers longer than this many tokens are cut (train.jsonl: median 116, 90th pct. 294)
TRUNCATION_MARK = "\n[... answer truncated]"


def preferred_longer(pair: dict) -> bool | None:
    """True when the preferred answer has more characters than the other, False when fewer, None when equal (the
    measure `eval judge` splits its accuracy by)."""
    other = "b" if pair["preferred"] == "a" else "a"
    mine, theirs = len(pair[f"response_{pair['preferred']}"]), len(pair[f"response_{other}"])
    return None if mine == theirs else mine > theirs


def length_balanced(pairs: list[dict]) -> list[dict]:
    """As many pairs whose preferred answer is the shorter as pairs whose preferred answer is the longer (the first
    ones of each kind), alternating longer, shorter, longer, ... so that every prefix of the result is balanced too
    (`eft train --limit N` on it stays balanced); pairs of equal length are dropped."""
    longer = [p for p in pairs if preferred_longer(p) is True]
    shorter = [p for p in pairs if preferred_longer(p) is False]
    return [p for both in zip(longer, shorter) for p in both]


def score_example(pair: dict, side: str, score: int, render) -> dict:
    """One EFT example: the judge prompt of one answer -> `Score: X` (X an integer 0-5)."""
    prompt, truncated = render(pair["instruction"], pair[f"response_{side}"])
    return {"prompt": prompt, "response": f"Score: {score}", "score": int(score), "pair": pair["index"],
            "side": side, "preferred": side == pair["preferred"], "preferred_longer": preferred_longer(pair),
            "truncated": truncated}


def label_examples(pairs: list[dict], render, scores: tuple[int, int] = LABEL_SCORES) -> list[dict]:
    """Label-conditioned targets: the preferred answer gets `scores[0]`, the other `scores[1]` (no model pass)."""
    high, low = scores
    if not SCORE_MIN <= low < high <= SCORE_MAX:
        raise ValueError(f"label scores must satisfy {SCORE_MIN} <= other < preferred <= {SCORE_MAX}, got {scores}")
    return [score_example(p, side, high if side == p["preferred"] else low, render)
            for p in pairs for side in ("a", "b")]


def rounded_score(score: float | None) -> int | None:
    """An expected score as an integer target (nearest, clamped to the scale); None stays None."""
    return None if score is None else min(SCORE_MAX, max(SCORE_MIN, round(score)))


def agreeing_examples(pairs: list[dict], scores: dict[tuple, float | None], render) -> list[dict]:
    """The paper's way at scale: the model's own scores of both answers (`scores[(pair index, side)]`, e.g. the
    `expected` judge's), rounded; a pair's two examples are kept when the preferred answer's rounded score is
    strictly the higher (`agreeing`)."""
    examples = []
    for p in pairs:
        other = "b" if p["preferred"] == "a" else "a"
        mine, theirs = (rounded_score(scores.get((p["index"], side))) for side in (p["preferred"], other))
        if agreeing(mine, theirs):
            examples += [score_example(p, side, mine if side == p["preferred"] else theirs, render)
                         for side in ("a", "b")]
    return examples


def from_labels(pairs: list[dict], way: str, render, scores: dict[tuple, float | None] | None = None,
                label_scores: tuple[int, int] = LABEL_SCORES) -> tuple[list[dict], dict]:
    """EFT examples of one `way` (see WAYS) from labelled pairs, and their counts.

    agreeing: the model's own rounded scores, kept where their order agrees with the label (needs `scores`);
    labels: label-conditioned targets for every pair; balanced: label-conditioned targets on a length-balanced
    subset (as many preferred-shorter as preferred-longer pairs)."""
    if way not in WAYS:
        raise ValueError(f"EFT way must be one of {', '.join(WAYS)}, got {way!r}")
    if way == "agreeing":
        if scores is None:
            raise ValueError("EFT way 'agreeing' needs the model's scores of both answers of each pair")
        examples = agreeing_examples(pairs, scores, render)
    else:
        examples = label_examples(length_balanced(pairs) if way == "balanced" else pairs, render, label_scores)
    return examples, example_stats(pairs, examples, way)


def example_stats(pairs: list[dict], examples: list[dict], way: str) -> dict:
    """What a set of score examples holds: pairs in and kept, examples, scores, the length split, truncations."""
    kept = {e["pair"]: e["preferred_longer"] for e in examples}
    return {"way": way, "pairs": len(pairs), "pairs_kept": len(kept), "examples": len(examples),
            "scores": _count(examples, "score"),
            "preferred_longer_pairs": sum(v is True for v in kept.values()),
            "preferred_shorter_pairs": sum(v is False for v in kept.values()),
            "equal_length_pairs": sum(v is None for v in kept.values()),
            "truncated_examples": sum(bool(e["truncated"]) for e in examples)}
