"""An experiment folder read back: one row of figures per arm per model M_k (M0 first, common to every arm), from
the measures files and the arm's own run directory (the training that made M_k)."""

from __future__ import annotations

from pathlib import Path

from ..evals.ifeval import degeneracy
from ..evals.paired import NONDEGENERATE, paired_generate, paired_ifeval, paired_judge
from ..records import read_json, read_jsonl
from ..runs import iteration_dir
from ..training import SUMMARY_FILE
from .definitions import PLAN_FILE, REUSED_FILE, arm_dir, measure_dir
from .judge_generate import FILE as JVG_FILE
from .timeline import read_timeline, time_by_model

# What the last models are compared on, item by item: (key, the measure (its summary file exists when it is
# finished), its items file, the paired comparison).
PAIRED = (("ifeval", "ifeval", "ifeval_items.jsonl", lambda a, b: paired_ifeval(a, b)["all"]),
          ("ifeval_nondegenerate", "ifeval", "ifeval_items.jsonl",
           lambda a, b: paired_ifeval(a, b, kind=NONDEGENERATE)["all"]),
          ("judge", "judge", "judge_items.jsonl", paired_judge),
          ("generate", "jvg", JVG_FILE, paired_generate))


def load_results(out: str | Path) -> dict:
    """{"experiment", "preset", "iterations", "arms": {arm: [row, ...]}, "gallery": {...}, "plan": experiment.json,
    "time": seconds per step (timeline.py)}; models not measured yet are left out."""
    out = Path(out)
    plan = read_json(out / PLAN_FILE)
    arms, gallery = {}, {}
    for arm in plan["arms"]:
        rows = []
        for k in range(plan["iterations"] + 1):
            folder = measure_dir(out, arm, k)
            parts = _parts(folder)
            if not parts:
                continue
            row = model_row(k, parts)
            if k:
                row.update(training_row(iteration_dir(arm_dir(out, arm), k), plan["arms"][arm]["config"]))
            rows.append(row)
            if "gallery" in parts:
                gallery.setdefault(arm, {})[k] = parts["gallery"]["answers"]
        arms[arm] = rows
    reused = out / REUSED_FILE
    return {"experiment": plan["experiment"], "preset": plan["preset"], "iterations": plan["iterations"],
            "arms": arms, "gallery": gallery, "paired": paired_comparisons(out, arms), "plan": plan,
            "reused": read_json(reused) if reused.exists() else {},
            "time": time_by_model(read_timeline(out), list(plan["arms"]), plan["iterations"])}


def paired_comparisons(out: Path, arms: dict[str, list[dict]]) -> list[dict]:
    """Prompt by prompt: every arm's last model against M0, and the first arm's last model against every other
    arm's, on the same IFEval prompts (difference in pass rate, its bootstrap interval, McNemar), the same labelled
    pairs (difference in judge accuracy) and, where judge-vs-generate measured both, the same IFEval prompts'
    sampled candidates (difference in the share that pass)."""
    last = {arm: rows[-1]["iteration"] for arm, rows in arms.items() if rows and rows[-1]["iteration"] > 0}
    names = list(last)
    wanted = [((arm, last[arm]), ("", 0)) for arm in names]
    wanted += [((names[0], last[names[0]]), (arm, last[arm])) for arm in names[1:]]
    found = []
    for (arm_a, k_a), (arm_b, k_b) in wanted:
        items = {}
        folders = (measure_dir(out, arm_a, k_a), measure_dir(out, arm_b, k_b))
        for kind, part, name, compare in PAIRED:
            if all((folder / f"{part}.json").exists() for folder in folders):
                items[kind] = compare(*(read_jsonl(folder / name) for folder in folders))
        found.append({"a": f"{arm_a} M{k_a}", "b": f"{arm_b} M{k_b}" if k_b else "M0", **items})
    return found


def _parts(folder: Path) -> dict:
    from .measure import PARTS

    parts = {part: read_json(folder / f"{part}.json") for part in PARTS if (folder / f"{part}.json").exists()}
    if "ifeval" in parts and "degenerate" not in parts["ifeval"]:  # measured before the summary said it
        parts["ifeval"].update(degeneracy(read_jsonl(folder / "ifeval_items.jsonl")))
    return parts


def model_row(k: int, parts: dict) -> dict:
    """The figures `--json` shows for M_k (None where a measure is missing)."""
    drift, ifeval, judge = (parts.get(p, {}) for p in ("drift", "ifeval", "judge"))
    row = {
        "iteration": k,
        "kl_to_m0": drift.get("kl_to_m0"), "kl_se": drift.get("kl_se"), "kl_per_token": drift.get("kl_per_token"),
        "distinct_2": drift.get("distinct_2"), "repetition": drift.get("repetition"),
        "mean_tokens": drift.get("mean_tokens"), "mean_chars": drift.get("mean_chars"),
        "at_limit": drift.get("at_limit"),
        "ifeval_prompt_loose": ifeval.get("prompt_loose"), "ifeval_inst_loose": ifeval.get("inst_loose"),
        "ifeval_prompt_strict": ifeval.get("prompt_strict"), "ifeval_n": ifeval.get("n"),
        "ifeval_mean_tokens": ifeval.get("mean_response_tokens"),
        "ifeval_degenerate": ifeval.get("degenerate"),
        "ifeval_prompt_loose_nondegenerate": ifeval.get("prompt_loose_nondegenerate"),
        "judge_accuracy": judge.get("accuracy"), "judge_ci_low": judge.get("ci_low"),
        "judge_ci_high": judge.get("ci_high"), "judge_n": judge.get("n"),
        "judge_picks_longer": judge.get("judge_picks_longer"),
    }
    if "jvg" in parts:
        row.update(jvg_row(parts["jvg"]))
    return row


def jvg_row(jvg: dict) -> dict:
    mean = lambda key: jvg[key]["mean"]  # noqa: E731
    return {"generate_pass": mean("generate"), "best_of_n_pass": mean("best_of_n"), "oracle_pass": mean("oracle"),
            "best_minus_random": mean("best_minus_random"), "recognise": mean("recognise"),
            "recognise_ci": [jvg["recognise"]["ci_low"], jvg["recognise"]["ci_high"]],
            "best_minus_random_ci": [jvg["best_minus_random"]["ci_low"], jvg["best_minus_random"]["ci_high"]],
            "longer_wins": mean("longer_wins"), "jvg_prompts": jvg["prompts"],
            "jvg_mixed_prompts": jvg["mixed_prompts"]}


def training_row(it_dir: Path, config: dict) -> dict:
    """How the training that made M_k moved the log-probs of its own pairs (end of training, against M_{k-1}), in
    nats: `delta_logp_chosen` and `delta_logp_rejected` (DPO's rewards / beta) on the trained pairs; on the pairs held
    out of training, the share whose chosen answer gained on the rejected one (`heldout_reward_accuracy`) and the
    mean gain (`heldout_margin`, nats)."""
    summary_path = it_dir / SUMMARY_FILE
    if not summary_path.exists():
        return {}
    summary = read_json(summary_path)
    end = summary.get("end_metrics", {})
    beta = config["train"]["beta"]
    pairs = read_jsonl(it_dir / "pairs.jsonl")
    return {
        "objective": summary.get("objective", "dpo"),
        "pairs": summary.get("pairs_trained"),
        "delta_logp_chosen": _nats(end.get("rewards/chosen"), beta),
        "delta_logp_rejected": _nats(end.get("rewards/rejected"), beta),
        "reward_accuracy": _round(summary.get("accuracy_end")),
        "heldout_pairs": summary.get("pairs_held_out"),
        "heldout_reward_accuracy": _round(summary.get("eval_accuracy")),
        "heldout_margin": _nats(summary.get("eval_margin"), beta),
        "chosen_longer_rate": _round(sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / len(pairs))
        if pairs else None,
    }


def _nats(reward: float | None, beta: float) -> float | None:
    return None if reward is None else round(reward / beta, 3)


def _round(value, digits: int = 4):
    return None if value is None else round(value, digits)
