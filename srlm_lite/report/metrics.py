"""The report's figures: pure functions of an iteration's records and of evaluation results."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from itertools import combinations
from pathlib import Path

from ..stats import pearson
from .load import Iteration


def funnel(it: Iteration) -> dict:
    """How many items survive each step: prompts generated -> kept -> paired; responses -> judged -> scored."""
    ins, res, jud, par = (it.records[s] for s in ("instructions", "responses", "judge", "pairs"))
    verdicts = [v for r in jud for v in r.get("judgments", [])]
    dropped = Counter(r.get("reason") or "dropped" for r in ins if not r.get("kept"))
    return {
        "prompts_generated": len(ins),
        "prompts_kept": sum(bool(r.get("kept")) for r in ins),
        "dropped": dict(dropped.most_common()),
        "responses": len(res),
        "truncated": sum(r.get("finish_reason") == "length" for r in res),
        "judged": len(jud),
        "scored": sum(r.get("score") is not None for r in jud),
        "self_parsed": sum(any(v.get("source") == "parsed" for v in r.get("judgments", [])) for r in jud),
        "verdicts": len(verdicts),
        "verdicts_parsed": sum(v.get("source") == "parsed" for v in verdicts),
        "verdicts_scored": sum(v.get("score") is not None for v in verdicts),
        "pairs": len(par),
        "pair_outcomes": ((it.manifest or {}).get("stats", {}).get("pairs", {}).get("outcomes")
                          or _pair_outcomes(res, par)),
    }


def _pair_outcomes(responses: list[dict], pairs: list[dict]) -> dict:
    if not pairs:
        return {}
    prompts = {r["prompt_id"] for r in responses if "prompt_id" in r}
    out = {"ok": len(pairs)}
    if len(prompts) > len(pairs):
        out["no pair (tie or too few scored)"] = len(prompts) - len(pairs)
    return out


def scores(it: Iteration) -> list[float]:
    return [r["score"] for r in it.records["judge"] if r.get("score") is not None]


def gaps(it: Iteration) -> list[float]:
    return [p["score_chosen"] - p["score_rejected"] for p in it.records["pairs"]]


def judge_agreement(judgments: list[dict]) -> float | None:
    """How often two independent verdicts of the judge order two answers to the same prompt the same way.

    For every two responses a, b of one prompt and every two verdict indices i < j: does sign(s_i(a) - s_i(b))
    equal sign(s_j(a) - s_j(b))? Ties are left out. 0.5 is chance, 1.0 a perfectly self-consistent judge.
    None when fewer than two verdicts per response were made (or nothing is comparable)."""
    by_prompt: dict[str, list[list[float | None]]] = {}
    for r in judgments:
        by_prompt.setdefault(r.get("prompt_id", r["id"]), []).append([v.get("score") for v in r.get("judgments", [])])
    agree = total = 0
    for group in by_prompt.values():
        for a, b in combinations(group, 2):
            n = min(len(a), len(b))
            for i, j in combinations(range(n), 2):
                if None in (a[i], b[i], a[j], b[j]):
                    continue
                first, second = a[i] - b[i], a[j] - b[j]
                if first == 0 or second == 0:
                    continue
                total += 1
                agree += (first > 0) == (second > 0)
    return agree / total if total else None


def verdict_spread(judgments: list[dict]) -> float | None:
    """Mean standard deviation of the J verdict scores of one response (how much the judge disagrees with itself)."""
    spreads = []
    for r in judgments:
        values = [v["score"] for v in r.get("judgments", []) if v.get("score") is not None]
        if len(values) >= 2:
            spreads.append(statistics.pstdev(values))
    return statistics.fmean(spreads) if spreads else None


def length_bias(it: Iteration) -> dict:
    """Does the judge prefer longer answers? Score-vs-length correlation and how often chosen is the longer one."""
    lengths = {r["id"]: len(r.get("response", "")) for r in it.records["responses"]}
    both = [(lengths[r["id"]], r["score"]) for r in it.records["judge"] if r.get("score") is not None
            and r["id"] in lengths]
    pairs = it.records["pairs"]
    longer = [len(p["chosen"]) > len(p["rejected"]) for p in pairs if len(p["chosen"]) != len(p["rejected"])]
    return {
        "score_length_r": pearson([a for a, _ in both], [b for _, b in both]) if both else None,
        "chosen_longer": sum(longer) / len(longer) if longer else None,
    }


def iteration_row(it: Iteration) -> dict:
    """One iteration's headline figures, from its records (so unfinished iterations get what exists)."""
    f = funnel(it)
    s = scores(it)
    pairs = it.records["pairs"]
    res = it.records["responses"]
    ts = it.train_summary or {}
    log = it.records["train"]
    summary = (it.manifest or {}).get("summary", {})
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    return {
        "iteration": it.t,
        "status": it.status,
        **{k: f[k] for k in ("prompts_generated", "prompts_kept", "responses", "judged", "scored", "pairs")},
        "parse_rate": f["verdicts_parsed"] / f["verdicts"] if f["verdicts"] else None,
        "score_rate": f["verdicts_scored"] / f["verdicts"] if f["verdicts"] else None,
        "mean_score": mean(s),
        "mean_score_chosen": mean([p["score_chosen"] for p in pairs]),
        "mean_score_rejected": mean([p["score_rejected"] for p in pairs]),
        "mean_gap": mean(gaps(it)),
        "dpo_loss_start": ts.get("loss_start", log[0]["loss"] if log else None),
        "dpo_loss_end": ts.get("loss_end"),
        "reward_accuracy_start": ts.get("accuracy_start"),
        "reward_accuracy_end": ts.get("accuracy_end"),
        "margin_end": ts.get("margin_end"),
        "online_loss": ts.get("online_loss"),
        "online_accuracy": ts.get("online_accuracy"),
        "eval_loss": ts.get("eval_loss"),
        "eval_accuracy": ts.get("eval_accuracy"),
        "pairs_held_out": ts.get("pairs_held_out"),
        "reward_source": summary.get("reward_source"),
        "reward_signal": summary.get("reward_signal") or {},
        "loops_ranked_last": summary.get("loops_ranked_last"),
        "train_steps": len(log),
        "mean_response_chars": mean([len(r.get("response", "")) for r in res]),
        "mean_response_tokens": mean([r["n_tokens"] for r in res if "n_tokens" in r]),
        "truncated": f["truncated"] / f["responses"] if f["responses"] else None,
        "judge_agreement": judge_agreement(it.records["judge"]),
        "verdict_spread": verdict_spread(it.records["judge"]),
        **length_bias(it),
        "seconds": summary.get("seconds", {}),
        "sampled_with": summary.get("sampled_with"),
    }


def moving_average(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


_MODEL_IN_NAME = re.compile(r"(?:^|[_\-.])[Mm](\d+)(?=$|[_\-.])")
_FRACTION_KEY = re.compile(r"accuracy|rate|strict|loose|win|agreement|consistency|pass")
_NOT_A_METRIC = re.compile(r"(^|\.)(ci_low|ci_high|n|seed|seconds|index)$")


def _scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def flatten(data, prefix: str = "", depth: int = 3) -> dict:
    """Nested dicts -> {"a.b.c": scalar}; lists of scalars are joined, deeper structures summarised."""
    out = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if _scalar(value):
                out[name] = value
            elif isinstance(value, list) and all(_scalar(v) for v in value):
                out[name] = ", ".join(str(v) for v in value[:12]) + (" ..." if len(value) > 12 else "")
            elif isinstance(value, dict) and depth > 1:
                out.update(flatten(value, name, depth - 1))
            else:
                out[name] = f"({type(value).__name__} of {len(value)})"
    return out


def eval_rows(data) -> list[dict] | None:
    """A list of per-model / per-iteration result dicts inside an eval file, if it has one."""
    candidates = [data] if isinstance(data, list) else []
    if isinstance(data, dict):
        candidates += [v for v in data.values() if isinstance(v, list)]
    for rows in candidates:
        if rows and all(isinstance(r, dict) for r in rows):
            return [flatten(r) for r in rows]
    return None


def eval_kind(name: str) -> str:
    """What was evaluated, from the file name: `evals/judge_M1.json` and `iter_1/eval_judge.json` -> "judge"."""
    stem = Path(name).stem
    if len(_MODEL_IN_NAME.findall(stem)) == 1:  # "judge_M1" -> "judge"; "h2h_M0_vs_M2" stays itself
        stem = _MODEL_IN_NAME.sub("", stem)
    return stem.removeprefix("eval_").removeprefix("eval-") or Path(name).stem


def model_index(row: dict, name: str = "") -> int | None:
    """k of the model M_k a result is about: an `iteration`/`k` field, a `model` like "M2 of runs/x", else
    one `M2` in the file name, else the iteration folder `iter_2/` (the model that iteration produced)."""
    for key in ("iteration", "k", "model_index"):
        if isinstance(row.get(key), int) and not isinstance(row.get(key), bool):
            return row[key]
    model = row.get("model")
    if isinstance(model, str):
        found = re.match(r"[Mm](\d+)\b", model.strip())
        if found:
            return int(found.group(1))
    found = _MODEL_IN_NAME.findall(Path(name).stem)
    if len(found) == 1:  # "judge_M1.json"; not "h2h_M0_vs_M2.json"
        return int(found[0])
    folder = Path(name).parent.name
    return int(folder[5:]) if folder.startswith("iter_") and folder[5:].isdigit() else None


def eval_series(evals: list[tuple[str, object]]) -> dict[str, dict[int, float]]:
    """Fractions (accuracy, rates, win rates) per model index M_k, for every metric known for at least two models."""
    series: dict[str, dict[int, float]] = {}
    for name, data in evals:
        rows = eval_rows(data) or ([flatten(data)] if isinstance(data, dict) else [])
        for row in rows:
            k = model_index(row, name if len(rows) == 1 else "")
            if k is None:
                continue
            for key, value in row.items():
                if (isinstance(value, bool) or not isinstance(value, (int, float)) or not _FRACTION_KEY.search(key)
                        or _NOT_A_METRIC.search(key) or not 0.0 <= value <= 1.0):
                    continue
                series.setdefault(f"{eval_kind(name)}: {key}", {})[k] = float(value)
    return {k: v for k, v in series.items() if len(v) >= 2}
