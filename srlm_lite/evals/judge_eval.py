"""`eval judge`: the judge's agreement with labelled preferences, pointwise (rubric scores) or pairwise (A vs B)."""

from __future__ import annotations

import time
from typing import Callable

from ..config import JudgeConfig
from ..engines.base import Engine
from ..errors import InputError
from ..judging import score_response
from ..judging.pairwise import compare_both_orders
from ..seeds import derive_seed
from ..stats import pair_credit, proportion, ranking_metrics
from .prompts import prompt_text, read_jsonl_records

Progress = Callable[[str, int, int], None]
MODES = ("pointwise", "pairwise")


def load_judge_file(path, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(pairs, rankings) from a JSONL file. A pair line has `instruction`, `response_a`, `response_b`,
    `preferred` ("a"/"b"); a ranking line has `instruction`, `responses` (list) and `ranks` (or `ranking`; same
    length, lower = better, e.g. Open Assistant's rank 0 = best)."""
    pairs, rankings = [], []
    for record in read_jsonl_records(path, limit):
        where = f"{path}:{record['_line']}"
        instruction = prompt_text(record)
        if instruction is None:
            raise InputError(f"{where}: no `instruction`")
        if "response_a" in record or "response_b" in record:
            preferred = str(record.get("preferred", "")).strip().lower()
            if preferred not in ("a", "b"):
                raise InputError(f"{where}: `preferred` must be 'a' or 'b', got {record.get('preferred')!r}")
            if not isinstance(record.get("response_a"), str) or not isinstance(record.get("response_b"), str):
                raise InputError(f"{where}: `response_a` and `response_b` must both be strings")
            pairs.append({"index": len(pairs), "instruction": instruction, "response_a": record["response_a"],
                          "response_b": record["response_b"], "preferred": preferred})
        elif "responses" in record:
            responses, ranks = record.get("responses"), record.get("ranks", record.get("ranking"))
            if (not isinstance(responses, list) or len(responses) < 2 or not isinstance(ranks, list)
                    or len(ranks) != len(responses)):
                raise InputError(f"{where}: a ranking needs `responses` (2 or more) and `ranks` of the same length")
            rankings.append({"index": len(rankings), "instruction": instruction, "responses": responses,
                             "ranks": [float(r) for r in ranks]})
        else:
            raise InputError(f"{where}: expected `response_a`/`response_b`/`preferred` or `responses`/`ranks`")
    return pairs, rankings


# ---------------------------------------------------------------------------------------------- judging

def pointwise_score(engine: Engine, instruction: str, response: str, config: JudgeConfig,
                    seeds: list[int]) -> dict:
    """The run's pointwise judge on one response: its verdicts (one per seed) and their mean score."""
    return score_response(engine, instruction, response, config, seeds)


# ---------------------------------------------------------------------------------------------- the eval

def evaluate_judge(engine: Engine, pairs: list[dict], rankings: list[dict] | None = None, *,
                   mode: str = "pointwise", config: JudgeConfig | None = None, seed: int = 0,
                   progress: Progress | None = None) -> dict:
    """Judge every pair (and, pointwise, every ranking); return the summary with per-item records in `items`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    config = config or JudgeConfig()
    rankings = rankings or []
    started = time.perf_counter()
    items = []
    for done, pair in enumerate(pairs, 1):
        if mode == "pointwise":
            items.append(_pointwise_pair(engine, pair, config, seed))
        else:
            items.append(_pairwise_pair(engine, pair, config.min_digit_mass))
        if progress:
            progress("judge pairs", done, len(pairs))
    ranked = []
    if mode == "pointwise":
        for done, ranking in enumerate(rankings, 1):
            scored = [pointwise_score(engine, ranking["instruction"], response, config,
                                      _seeds(seed, config, "ranking", ranking["index"], k))
                      for k, response in enumerate(ranking["responses"])]
            ranked.append({"index": ranking["index"], "scores": [s["score"] for s in scored],
                           "ranks": ranking["ranks"], "verdicts": [v for s in scored for v in s["verdicts"]]})
            if progress:
                progress("judge rankings", done, len(rankings))
    summary = summarize(items, mode)
    summary["rankings"] = _ranking_summary(ranked, rankings, mode)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["items"] = items + [{"ranking": r} for r in ranked]
    return summary


def _seeds(seed: int, config: JudgeConfig, *parts) -> list[int]:
    return [derive_seed(seed, "eval-judge", *parts, j) for j in range(config.judge_samples)]


def _pointwise_pair(engine: Engine, pair: dict, config: JudgeConfig, seed: int) -> dict:
    a, b = (pointwise_score(engine, pair["instruction"], pair[f"response_{side}"], config,
                            _seeds(seed, config, pair["index"], side)) for side in ("a", "b"))
    verdicts = a["verdicts"] + b["verdicts"]
    judge_pick = None
    if a["score"] is not None and b["score"] is not None and a["score"] != b["score"]:
        judge_pick = "a" if a["score"] > b["score"] else "b"
    return {
        **_pair_fields(pair),
        "score_a": _round(a["score"]),
        "score_b": _round(b["score"]),
        "judge_pick": judge_pick,
        "credit": pair_credit(a["score"], b["score"], pair["preferred"]),
        "verdicts": len(verdicts),
        "parsed": sum(v["source"] == "parsed" for v in verdicts),
        "scored": sum(v["score"] is not None for v in verdicts),
    }


def _pairwise_pair(engine: Engine, pair: dict, min_mass: float) -> dict:
    result = compare_both_orders(engine, pair["instruction"], pair["response_a"], pair["response_b"], min_mass)
    judge_pick = {"x": "a", "y": "b"}.get(result["winner"])
    credit = 0.5 if judge_pick is None else float(judge_pick == pair["preferred"])
    orders = result["orders"]
    return {
        **_pair_fields(pair),
        "p_a": result["p_x"],
        "judge_pick": judge_pick,
        "credit": credit,
        # position-debiased: P(a better) averaged over both orders decides, even when the orders disagree
        "credit_debiased": 0.5 if result["p_x"] == 0.5 else float((result["p_x"] > 0.5) == (pair["preferred"] == "a")),
        "consistent": result["consistent"],
        "orders": orders,
        "verdicts": 2,
        "parsed": sum(o["mass"] >= min_mass for o in orders),
        "scored": sum(o["choice"] is not None for o in orders),
    }


def _pair_fields(pair: dict) -> dict:
    return {"index": pair["index"], "preferred": pair["preferred"], "len_a": len(pair["response_a"]),
            "len_b": len(pair["response_b"])}


def _longer(item: dict) -> str | None:
    if item["len_a"] == item["len_b"]:
        return None
    return "a" if item["len_a"] > item["len_b"] else "b"


def summarize(items: list[dict], mode: str) -> dict:
    """Accuracy (ties half) with its Wilson interval; ties; parse rate; the split by whether the preferred answer
    is the longer one; the "longer answer wins" baseline on the same pairs; position consistency (pairwise)."""
    credits = [i["credit"] for i in items]
    main = proportion(credits)
    verdicts = sum(i["verdicts"] for i in items)
    longer_pref = [i["credit"] for i in items if _longer(i) == i["preferred"]]
    shorter_pref = [i["credit"] for i in items if _longer(i) not in (None, i["preferred"])]
    baseline = [0.5 if _longer(i) is None else float(_longer(i) == i["preferred"]) for i in items]
    picks = [i for i in items if i["judge_pick"] is not None and _longer(i) is not None]
    summary = {
        "mode": mode,
        "n": main["n"],
        "accuracy": main["accuracy"],
        "ci_low": main["ci_low"],
        "ci_high": main["ci_high"],
        "ties": sum(i["judge_pick"] is None for i in items),
        "parse_rate": round(sum(i["parsed"] for i in items) / verdicts, 4) if verdicts else None,
        "score_rate": round(sum(i["scored"] for i in items) / verdicts, 4) if verdicts else None,
        "position_consistency": None,
        "first_position_rate": None,
        "by_length": {
            "preferred_longer": proportion(longer_pref),
            "preferred_shorter": proportion(shorter_pref),
            "equal_length": sum(_longer(i) is None for i in items),
        },
        "longer_wins": proportion(baseline),
        "judge_picks_longer": _mean([float(_longer(i) == i["judge_pick"]) for i in picks]),
    }
    if mode == "pointwise":
        preferred = [i["score_a"] if i["preferred"] == "a" else i["score_b"] for i in items]
        other = [i["score_b"] if i["preferred"] == "a" else i["score_a"] for i in items]
        summary["mean_score_preferred"] = _mean(preferred)
        summary["mean_score_other"] = _mean(other)
    else:
        choices = [o["choice"] for i in items for o in i["orders"] if o["choice"] is not None]
        summary["position_consistency"] = round(sum(i["consistent"] for i in items) / len(items), 4) if items else None
        summary["first_position_rate"] = round(choices.count("first") / len(choices), 4) if choices else None
        summary["mean_letter_mass"] = _mean([o["mass"] for i in items for o in i["orders"]])
        summary["accuracy_debiased"] = proportion([i["credit_debiased"] for i in items])
    return summary


def _ranking_summary(ranked: list[dict], rankings: list[dict], mode: str) -> dict | None:
    if not rankings:
        return None
    if mode != "pointwise":
        return {"skipped": "full rankings are scored with the pointwise judge (--mode pointwise)"}
    return ranking_metrics([(r["scores"], r["ranks"]) for r in ranked])


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
