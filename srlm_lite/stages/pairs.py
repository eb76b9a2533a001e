"""Stage 4, pairs: best vs worst mean score per prompt, ties dropped (pure selection), written as pairs.jsonl."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import PairsConfig
from ..records import group_by, read_jsonl, write_jsonl_atomic
from .judge import FIELDS as JUDGMENT_FIELDS
from .judge import FILE as JUDGMENTS_FILE
from .reward import FIELDS as REWARD_FIELDS
from .reward import FILE as REWARDS_FILE
from .responses import FIELDS as RESPONSE_FIELDS
from .responses import FILE as RESPONSES_FILE


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str
    score: float | None


@dataclass(frozen=True)
class Pair:
    chosen: Candidate
    rejected: Candidate


def select_pair(candidates: list[Candidate], min_gap: float = 0.0,
                length_tolerance: float | None = None) -> tuple[Pair | None, str]:
    """Chosen = highest mean score, rejected = lowest; (None, reason) when no pair can be made.

    Unscored candidates are dropped (never treated as the minimum). Ties for the top or bottom break
    to the first candidate in order; a prompt whose best and worst scores are equal (or closer than
    `min_gap`) gives no pair.

    Length-aware tie-break (Meta-Rewarding's length control), when `length_tolerance` is given: every
    candidate within `length_tolerance` of the best score counts as best and the shortest of them is chosen;
    every one within it of the worst counts as worst and the longest of them is rejected. The chosen must
    still score above the rejected.
    """
    scored = [c for c in candidates if c.score is not None]
    if len(scored) < 2:
        return None, "too_few_scored"
    best = max(scored, key=lambda c: c.score)
    worst = min(scored, key=lambda c: c.score)
    gap = best.score - worst.score
    if gap <= 0:
        return None, "tie"
    if gap < min_gap:
        return None, "gap_below_min"
    if length_tolerance is not None:
        best = min((c for c in scored if c.score >= best.score - length_tolerance), key=lambda c: len(c.text))
        worst = max((c for c in scored if c.score <= worst.score + length_tolerance), key=lambda c: len(c.text))
        if best.score <= worst.score:
            return None, "tie"
    return Pair(chosen=best, rejected=worst), "ok"


FILE = "pairs.jsonl"
FIELDS = {"id": str, "prompt": str, "chosen": str, "rejected": str}


def run(ctx) -> dict:
    """Stage 4 of iteration t: pairs.jsonl from the candidates and their judgments."""
    records, outcomes = make_pairs(ctx.dir, ctx.config.pairs)
    return summarize(records, outcomes)


def make_pairs(it_dir: Path, config: PairsConfig) -> tuple[list[dict], dict]:
    """pairs.jsonl of an iteration folder from its responses.jsonl and judgments.jsonl (written atomically)."""
    tolerance = config.tie_tolerance if config.length_tie_break else None
    rewards = it_dir / REWARDS_FILE  # the reward stage's scores (older runs: the judge's)
    scored = (read_jsonl(rewards, fields=REWARD_FIELDS) if rewards.exists()
              else read_jsonl(it_dir / JUDGMENTS_FILE, fields=JUDGMENT_FIELDS))
    records, outcomes = build_pairs(read_jsonl(it_dir / RESPONSES_FILE, fields=RESPONSE_FIELDS), scored,
                                    config.min_score_gap, tolerance)
    write_jsonl_atomic(it_dir / FILE, records)
    return records, outcomes


def build_pairs(responses: list[dict], judgments: list[dict], min_gap: float = 0.0,
                length_tolerance: float | None = None) -> tuple[list[dict], dict]:
    """Pair records (TRL's `prompt`/`chosen`/`rejected` plus scores and ids) and the count of each outcome.

    With `length_tolerance`, the length-aware tie-break applies; `tie_break_changed` marks the pairs it changed.
    """
    scores = {j["id"]: j["score"] for j in judgments}
    weights = {j["prompt_id"]: j["consistency"] for j in judgments if "consistency" in j}
    records, outcomes = [], {}
    for prompt_id, group in group_by(responses).items():
        candidates = [Candidate(r["id"], r["response"], scores.get(r["id"])) for r in group]
        pair, outcome = select_pair(candidates, min_gap, length_tolerance)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if pair is None:
            continue
        plain, _ = select_pair(candidates, min_gap) if length_tolerance is not None else (pair, outcome)
        finished = {r["id"]: r["finish_reason"] == "stop" for r in group}
        records.append({
            "id": prompt_id,
            "prompt": group[0]["prompt"],
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
            "score_chosen": pair.chosen.score,
            "score_rejected": pair.rejected.score,
            "chosen_id": pair.chosen.id,
            "rejected_id": pair.rejected.id,
            "chosen_finished": finished[pair.chosen.id],
            "rejected_finished": finished[pair.rejected.id],
            "tie_break_changed": plain != pair,
            **({"label_smoothing": round(1 - weights[prompt_id], 4)} if prompt_id in weights else {}),
        })
    return records, outcomes


def summarize(records: list[dict], outcomes: dict) -> dict:
    """Counts and means of the pairs: scores, lengths, and how often the chosen answer is the longer one."""

    def mean(values):
        values = list(values)
        return round(sum(values) / len(values), 4) if values else None

    return {
        "pairs": len(records),
        "outcomes": outcomes,
        "mean_score_chosen": mean(r["score_chosen"] for r in records),
        "mean_score_rejected": mean(r["score_rejected"] for r in records),
        "mean_chars_chosen": mean(len(r["chosen"]) for r in records),
        "mean_chars_rejected": mean(len(r["rejected"]) for r in records),
        "chosen_longer_rate": mean(len(r["chosen"]) > len(r["rejected"]) for r in records),
        "tie_break_changed": sum(bool(r.get("tie_break_changed")) for r in records),
    }
