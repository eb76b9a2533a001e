"""`iterate --eval`: the chosen evaluations of each iteration's model, written into the run directory.

M_k's results go to `iter_k/eval_<kind>.json` (per-item records beside them as `eval_<kind>_items.jsonl`); the
starting model's to `evals/<kind>_M0.json`. A file that exists is a finished evaluation: a resumed run skips it.
The report (`srlm-lite report`) finds these files and plots them across iterations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import EvalConfig, RunConfig
from ..engines import EngineOptions, open_engine
from ..records import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from ..runs import iteration_dir, model_for_iteration

KINDS = ("judge", "ifeval", "h2h")
FILE_KEYS = {"judge": "judge_pairs", "ifeval": "ifeval_prompts", "h2h": "h2h_prompts"}
# Defaults shared with the `srlm-lite eval` commands.
IFEVAL_MAX_TOKENS = 256
H2H_MAX_TOKENS = 128


def parse_eval_option(value: str) -> tuple[str, str]:
    """`KIND=FILE` (as given to `iterate --eval`) -> (kind, file); kind is judge, ifeval or h2h."""
    kind, sep, path = value.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not path.strip():
        raise ValueError(f"--eval takes KIND=FILE with KIND one of {', '.join(KINDS)}; got {value!r}")
    return kind, path.strip()


def chosen(config: EvalConfig) -> dict[str, str]:
    """{kind: file} of the evaluations a run asked for."""
    return {kind: getattr(config, key) for kind, key in FILE_KEYS.items() if getattr(config, key)}


def result_path(run_dir: Path, kind: str, k: int) -> Path:
    return Path(run_dir) / "evals" / f"{kind}_M0.json" if k == 0 else iteration_dir(run_dir, k) / f"eval_{kind}.json"


def evaluate_model(run_dir: Path, config: RunConfig, k: int, say: Callable[[str], None] = print,
                   progress=None) -> dict:
    """Run every chosen evaluation of M_k not yet on disk; {kind: headline figures} of all of them."""
    results = {}
    for kind, path in chosen(config.eval).items():
        if kind == "h2h" and k == 0:
            continue  # M0 against itself
        target = result_path(run_dir, kind, k)
        if not target.exists():
            say(f"M{k}: eval {kind} on the first {config.eval.limit} of {path}")
            summary = _run(kind, Path(path), run_dir, config, k, progress)
            items = summary.pop("items", [])
            if k > 0:
                summary["paired_vs_M0"] = paired_vs_m0(run_dir, kind, items, config)
            write_jsonl_atomic(items_path(target), items)
            write_json_atomic(target, summary)
        results[kind] = headline(kind, read_json(target))
    return results


def items_path(result: Path) -> Path:
    return result.with_name(result.stem + "_items.jsonl")


def paired_vs_m0(run_dir: Path, kind: str, items: list[dict], config: RunConfig) -> dict | None:
    """M_k against M0 on the same items, where M0 was evaluated: the paired difference and its interval (IFEval:
    also split by the constraint families a verify reward trained on, and those it never saw, and counted without
    loops)."""
    from ..rewards.constraints import parse_families
    from .paired import paired_ifeval_all, paired_judge

    baseline = items_path(result_path(run_dir, kind, 0))
    if kind == "h2h" or not baseline.exists():
        return None
    m0 = read_jsonl(baseline)
    if kind == "judge":
        return paired_judge(items, m0)
    return paired_ifeval_all(items, m0, trained_families=parse_families(config.reward.verify_families))


def headline(kind: str, summary: dict) -> dict:
    """The figures `iterate --json` shows for one evaluation (the full summary stays in its file)."""
    keys = {"judge": ("n", "accuracy", "ci_low", "ci_high", "parse_rate", "ties"),
            "ifeval": ("n", "prompt_strict", "prompt_loose", "inst_strict", "inst_loose", "prompt_loose_nondegenerate",
                       "degenerate"),
            "h2h": ("n", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high", "mean_chars_a", "mean_chars_b")}
    found = {key: summary.get(key) for key in keys[kind]}
    paired = summary.get("paired_vs_M0")
    if paired:
        found["paired_vs_M0"] = paired.get("all", paired)
        if paired.get("no_loop"):
            found["paired_vs_M0_no_loop"] = paired["no_loop"]
    return found


def _run(kind: str, path: Path, run_dir: Path, config: RunConfig, k: int, progress) -> dict:
    limit = config.eval.limit
    spec = model_for_iteration(run_dir, k)
    options = EngineOptions.from_config(config.model)
    if kind == "judge":
        from .judge_eval import evaluate_judge, load_judge_file

        pairs, rankings = load_judge_file(path, limit)
        summary = evaluate_judge(open_engine(spec, options), pairs, rankings, mode="pointwise", config=config.judge,
                                 seed=config.seed, progress=progress)
        return {"model": f"M{k}", "iteration": k, "pairs_file": str(path), **summary}
    if kind == "ifeval":
        from .ifeval import evaluate_ifeval, load_ifeval

        summary = evaluate_ifeval(open_engine(spec, options), load_ifeval(path, limit), max_tokens=IFEVAL_MAX_TOKENS,
                                  seed=config.seed, progress=progress)
        return {"model": f"M{k}", "iteration": k, "prompts_file": str(path), **summary}
    from .h2h import head_to_head
    from .prompts import read_prompts

    base = open_engine(model_for_iteration(run_dir, 0), options)
    summary = head_to_head(open_engine(spec, options), base, base, read_prompts(path, limit),
                           max_tokens=H2H_MAX_TOKENS, seed=config.seed, judge_config=config.judge, progress=progress)
    return {"model": f"M{k}", "iteration": k, "a": f"M{k}", "b": "M0", "judge": f"M0 ({config.judge.mode})",
            "prompts_file": str(path),
            **summary}
