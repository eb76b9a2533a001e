"""Every measure of one model M_k, each written to its own file in the model's measures folder (a file that exists is
a finished measure: a resumed experiment skips it).

Parts, in order: `gallery` (a few drift prompts answered greedily), `ifeval` (IFEval accuracy, greedy), `judge` (its
own judge on labelled pairs), `jvg` (judging against generating, when asked for), `drift` (answers sampled at
temperature 1: KL to M0, diversity, repetition, length). For the KL, M_k's samples are scored by a fresh engine of
M_k and then by a fresh engine of M0, in the same order, so both pass through the same llama.cpp batching and the
difference is the models' alone (M0 against itself gives exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..engines import SEQUENCES_PER_BATCH, EngineOptions, complete_many, open_engine
from ..hooks import Hooks
from ..records import StageFile, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from ..runs import ModelSpec
from ..seeds import derive_seed
from .definitions import Measures
from .drift import answer_stats, kl_estimate

PARTS = ("gallery", "ifeval", "judge", "jvg", "drift")
# What each part depends on besides the model and the arm's settings: its data file and its fields of Measures (a
# measure another experiment made with the same ones is reused: reuse.py)
INPUTS = {
    "gallery": ("drift", ("drift_prompts", "gallery_prompts", "gallery_max_tokens")),
    "ifeval": ("ifeval", ("ifeval_prompts", "ifeval_max_tokens")),
    "judge": ("pairs", ("judge_pairs",)),
    "jvg": ("ifeval", ("jvg_prompts", "jvg_samples", "jvg_max_tokens")),
    "drift": ("drift", ("drift_prompts", "drift_samples", "drift_max_tokens")),
}
GROUP = 4  # prompts whose candidates are sampled together (16 sequences at N = 4)


@dataclass(frozen=True)
class DataFiles:
    """The fixed data every model is measured on (never trained on)."""

    ifeval: Path  # IFEval prompts (JSONL: key, prompt, instruction_id_list, kwargs)
    pairs: Path  # labelled answer pairs (instruction, response_a, response_b, preferred)
    drift: Path  # prompts for the drift measures and the gallery (e.g. MT-Bench questions)


@dataclass
class Target:
    """M_k to measure (with M0 beside it for the KL), the arm's config, and where its measures go."""

    model: ModelSpec
    base: ModelSpec
    k: int
    config: RunConfig
    dir: Path
    label: str = ""


def data_files(folder: str | Path | None = None, **given: str | Path | None) -> DataFiles:
    """The data files: each one given (`ifeval=`, `pairs=`, `drift=`), else its usual place under `folder` (default:
    $SRLM_DATA, else ../shared/data); a clear error names what is missing."""
    import os

    from .definitions import DATA_FILES

    root = Path(folder or os.environ.get("SRLM_DATA") or "../shared/data")
    found = {key: Path(given.get(key) or root / relative) for key, relative in DATA_FILES.items()}
    missing = [f"{key} ({path})" for key, path in found.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"experiment data not found: {', '.join(missing)}; give the files (--ifeval, --pairs, "
                                f"--drift-prompts) or a folder holding {', '.join(DATA_FILES.values())} (--data or "
                                f"$SRLM_DATA)")
    return DataFiles(**{key: path.resolve() for key, path in found.items()})


def spread(items: list, n: int) -> list:
    """n items evenly spread over the list (all of them when n >= its length), in order."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def drift_prompts(data: DataFiles, measures: Measures) -> list[dict]:
    from ..evals.prompts import read_prompts

    return spread(read_prompts(data.drift), measures.drift_prompts)


def measure_model(target: Target, measures: Measures, data: DataFiles, hooks: Hooks | None = None,
                  parts: tuple[str, ...] = PARTS) -> dict:
    """Every part (of `parts`) not yet on disk, then {part: summary} of all of them."""
    hooks = hooks or Hooks()
    target.dir.mkdir(parents=True, exist_ok=True)
    engine = LazyEngine(target.model, EngineOptions.from_config(target.config.model))
    found = {}
    for part in parts:
        if part == "jvg" and not measures.jvg_prompts:
            continue
        path = target.dir / f"{part}.json"
        if not path.exists():
            hooks.say(f"{target.label}: measuring {part}")
            write_json_atomic(path, _PARTS[part](target, measures, data, engine, hooks))
        found[part] = read_json(path)
    return found


class LazyEngine:
    """M_k's engine, opened on first call and released on demand (before the KL's fresh engines open)."""

    def __init__(self, spec: ModelSpec, options: EngineOptions):
        self.spec, self.options, self._engine = spec, options, None

    def __call__(self):
        if self._engine is None:
            self._engine = open_engine(self.spec, self.options)
        return self._engine

    def release(self) -> None:
        self._engine = None


def _progress(hooks: Hooks, target: Target, what: str) -> Callable[[str, int, int], None]:
    return lambda _stage, done, total: hooks.progress and hooks.progress(f"{target.label} {what}", done, total)


def _gallery(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> dict:
    prompts = spread(drift_prompts(data, measures), measures.gallery_prompts)
    answers = []
    for item in prompts:
        e = engine()
        out = e.complete(e.chat_prompt(item["prompt"]), max_tokens=measures.gallery_max_tokens, temperature=0.0,
                         top_p=1.0, seed=0)
        answers.append({"id": item["id"], "prompt": item["prompt"], "response": out.text.strip(),
                        "n_tokens": out.n_tokens, "finish_reason": out.finish_reason})
    return {"model": f"M{target.k}", "answers": answers}


def _ifeval(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> dict:
    """`eval ifeval`'s measure (greedy answers, IFEval's checks and scores), the answers of 16 prompts decoded
    together (`complete_many`) instead of one after another."""
    from ..evals.ifeval import BENCHMARK, check_response, load_ifeval, offline_checkers, score

    offline_checkers()
    records, items, progress = load_ifeval(data.ifeval, measures.ifeval_prompts), [], _progress(hooks, target, "IFEval")
    for start in range(0, len(records), SEQUENCES_PER_BATCH):
        group, e = records[start:start + SEQUENCES_PER_BATCH], engine()
        requests = [(e.chat_prompt(r["prompt"]), [derive_seed(target.config.seed, BENCHMARK, str(r["key"]))])
                    for r in group]
        outs = complete_many(e, requests, max_tokens=measures.ifeval_max_tokens, temperature=0.0, top_p=1.0)
        for record, (out,) in zip(group, outs):
            items.append({"key": record["key"], "instruction_id_list": record["instruction_id_list"],
                          "response": out.text, "n_tokens": out.n_tokens, "finish_reason": out.finish_reason,
                          **check_response(record, out.text)})
        progress("", len(items), len(records))
    write_jsonl_atomic(target.dir / "ifeval_items.jsonl", items)
    return {"model": f"M{target.k}", "prompts_file": str(data.ifeval), "max_tokens": measures.ifeval_max_tokens,
            **score(items), "mean_response_tokens": round(sum(i["n_tokens"] for i in items) / len(items), 1),
            "truncated": sum(i["finish_reason"] == "length" for i in items)}


def _judge(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> dict:
    from ..evals.judge_eval import evaluate_judge, load_judge_file

    pairs, _ = load_judge_file(data.pairs, measures.judge_pairs)
    summary = evaluate_judge(engine(), pairs, mode="pointwise", config=target.config.judge, seed=target.config.seed,
                             progress=_progress(hooks, target, "judge on labelled pairs"))
    write_jsonl_atomic(target.dir / "judge_items.jsonl", summary.pop("items"))
    return {"model": f"M{target.k}", "pairs_file": str(data.pairs), **summary}


def _jvg(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> dict:
    from .judge_generate import measure_jvg

    return measure_jvg(engine, target, measures, data, _progress(hooks, target, "judge-vs-generate"))


def _drift(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> dict:
    samples = _drift_samples(target, measures, data, engine, hooks)
    engine.release()
    found = {"model": f"M{target.k}", "prompts_file": str(data.drift), "temperature": 1.0, "top_p": 1.0,
             "max_tokens": measures.drift_max_tokens, **answer_stats(samples)}
    if target.k == 0:
        return {**found, "kl_to_m0": 0.0, "kl_se": 0.0, "kl_per_token": 0.0, "kl_n": len(samples)}
    scored = _drift_logps(target, samples, hooks)
    kl = kl_estimate([s["logp_model"] for s in scored], [s["logp_m0"] for s in scored])
    tokens = sum(s["tokens"] for s in scored)
    return {**found, "kl_to_m0": _round(kl["kl"]), "kl_se": _round(kl["se"]), "kl_n": kl["n"],
            "kl_per_token": _round(kl["kl"] * kl["n"] / tokens) if tokens and kl["kl"] is not None else None}


def _drift_samples(target: Target, measures: Measures, data: DataFiles, engine, hooks: Hooks) -> list[dict]:
    """M_k's answers to the drift prompts at temperature 1 (seeds shared by every model: common random numbers)."""
    path = target.dir / "drift_samples.jsonl"
    if path.exists():
        return read_jsonl(path)
    prompts = drift_prompts(data, measures)
    seed = target.config.seed
    samples, progress = [], _progress(hooks, target, "drift samples")
    for start in range(0, len(prompts), GROUP):
        group = prompts[start:start + GROUP]
        e = engine()
        seeds = [[derive_seed(seed, "drift", item["id"], s) for s in range(measures.drift_samples)] for item in group]
        outs = complete_many(e, [(e.chat_prompt(item["prompt"]), s) for item, s in zip(group, seeds)],
                             max_tokens=measures.drift_max_tokens, temperature=1.0, top_p=1.0)
        for item, item_seeds, completions in zip(group, seeds, outs):
            samples += [{"id": f"{item['id']}-s{s}", "prompt_id": item["id"], "prompt": item["prompt"],
                         "response": out.text, "n_tokens": out.n_tokens, "finish_reason": out.finish_reason,
                         "seed": seed_s} for s, (seed_s, out) in enumerate(zip(item_seeds, completions))]
        progress("", min(start + GROUP, len(prompts)), len(prompts))
    write_jsonl_atomic(path, samples)
    return samples


def _drift_logps(target: Target, samples: list[dict], hooks: Hooks) -> list[dict]:
    """log M_k(y) and log M0(y) of every sample y (the sum over its tokens), each by a fresh engine, same order."""
    stage = StageFile(target.dir / "drift_logps.jsonl")
    if stage.done:
        return stage.records()
    options = EngineOptions.from_config(target.config.model)
    sums = {}
    for key, spec in (("logp_model", target.model), ("logp_m0", target.base)):
        engine = open_engine(spec, options)
        progress = _progress(hooks, target, f"KL: log-probs under {'M0' if key == 'logp_m0' else 'the model'}")
        for done, sample in enumerate(samples, 1):
            logps = engine.continuation_logprobs(engine.chat_prompt(sample["prompt"]), sample["response"])
            sums.setdefault(sample["id"], {"id": sample["id"], "tokens": len(logps)})[key] = sum(logps)
            progress("", done, len(samples))
        del engine
    for record in sums.values():
        stage.append(record)
    return stage.complete([s["id"] for s in samples])


def _round(value, digits: int = 4):
    return None if value is None else round(value, digits)


_PARTS = {"gallery": _gallery, "ifeval": _ifeval, "judge": _judge, "jvg": _jvg, "drift": _drift}
