"""Paired statistics: M_t against M0 on the same items (IFEval prompts, labelled pairs), with the paired difference,
its 95% bootstrap interval and McNemar's test; IFEval split by the instruction families a `verify` reward trained
on and those it never saw (pure)."""

from __future__ import annotations

from typing import Sequence

from ..stats import mcnemar, paired_difference
from ..text_stats import degenerate

NONDEGENERATE = "loose_nondegenerate"


def _family(instruction_id: str) -> str:
    return instruction_id.split(":")[0]


def prompt_passes(item: dict, kind: str = "loose") -> bool:
    """IFEval's prompt-level pass: every instruction of the prompt followed (`kind` strict or loose); with
    `loose_nondegenerate`, by an answer that is not a loop (text_stats.degenerate)."""
    if kind == NONDEGENERATE:
        return all(item["loose"]) and not degenerate(item["response"])
    return all(item[kind])


def paired_ifeval(items_a: Sequence[dict], items_b: Sequence[dict], *, kind: str = "loose",
                  trained_families: Sequence[str] | None = None) -> dict:
    """Model a against model b on the IFEval prompts both answered (matched by key), prompt-level `kind` pass. With
    `trained_families`: also on the prompts whose instructions all come from those families (`seen`) and on those
    none of whose instructions do (`unseen`)."""
    b_by_key = {item["key"]: item for item in items_b}
    both = [(a, b_by_key[a["key"]]) for a in items_a if a["key"] in b_by_key]
    out = {"all": _compare(both, kind)}
    if trained_families is not None:
        trained = set(trained_families)
        families = [{_family(i) for i in a["instruction_id_list"]} for a, _ in both]
        out["seen"] = _compare([p for p, f in zip(both, families) if f <= trained], kind)
        out["unseen"] = _compare([p for p, f in zip(both, families) if not f & trained], kind)
    return out


def paired_ifeval_all(items_a: Sequence[dict], items_b: Sequence[dict], *,
                      trained_families: Sequence[str] | None = None) -> dict:
    """What `eval paired` and `iterate --eval` show for IFEval: `paired_ifeval` at loose level (all, seen, unseen)
    and, where the items carry their answers, `no_loop`: passes counted only by answers that are not loops."""
    out = paired_ifeval(items_a, items_b, trained_families=trained_families)
    if all("response" in item for item in (*items_a, *items_b)):
        out["no_loop"] = paired_ifeval(items_a, items_b, kind=NONDEGENERATE)["all"]
    return out


def _compare(both: list[tuple[dict, dict]], kind: str) -> dict:
    a = [prompt_passes(x, kind) for x, _ in both]
    b = [prompt_passes(y, kind) for _, y in both]
    return {"n": len(both), "a": _rate(a), "b": _rate(b), **paired_difference(a, b), **mcnemar(a, b)}


def paired_judge(items_a: Sequence[dict], items_b: Sequence[dict]) -> dict:
    """Judge a against judge b on the labelled pairs both judged (matched by index): credit 1 / 0.5 / 0."""
    b_by_index = {item["index"]: item for item in items_b if "index" in item}
    both = [(a, b_by_index[a["index"]]) for a in items_a if a.get("index") in b_by_index]
    a, b = [x["credit"] for x, _ in both], [y["credit"] for _, y in both]
    return {"n": len(both), "a": _rate(a), "b": _rate(b), **paired_difference(a, b)}


def paired_generate(items_a: Sequence[dict], items_b: Sequence[dict]) -> dict:
    """Generation of model a against model b on the IFEval prompts both sampled (judge-vs-generate's candidate
    records, matched by key): per prompt, the share of its candidates that pass."""
    b_by_key = {item["key"]: item for item in items_b}
    both = [(x, b_by_key[x["key"]]) for x in items_a if x["key"] in b_by_key]
    a, b = ([_share_passing(pair[side]) for pair in both] for side in (0, 1))
    return {"n": len(both), "a": _rate(a), "b": _rate(b), **paired_difference(a, b)}


def _share_passing(item: dict) -> float:
    candidates = item["candidates"]
    return sum(bool(c["pass"]) for c in candidates) / len(candidates)


def _rate(values: Sequence[float]) -> float | None:
    return round(sum(map(float, values)) / len(values), 4) if values else None
