"""The reward sources measured side by side (the README's "Where the reward comes from"): for each source, a
default-size three-iteration run from the same M0 and seed, then M0 and M3 on all IFEval dev prompts (split by the
constraint families `verify` trained on and those it never saw), the judge on the 150 labelled dev pairs, answer
length per iteration, and the signal check. Every step writes its file and is skipped when rerun.

    python tests/tools/reward_study.py --out /work/runs/rewards            # everything (hours on 2 cores)
    python tests/tools/reward_study.py --out /work/runs/rewards --only verify,implicit
    python tests/tools/reward_study.py --out /work/runs/rewards --table    # the results table from what exists
    python tests/tools/reward_study.py --out /work/runs/rewards --only judge \
        --reuse judge=/work/runs/experiments/s4/sft-vs-dpo/arms/dpo   # its finished iterations linked, not rerun

`verify+loops-last` is `verify` with today's default `[reward] max_repetition = 0.5`: a candidate whose word
4-grams repeat more than half the time (a loop) is ranked below every other, so it is never chosen; the arms measured
before that default existed say `--max-repetition 1`. The table counts IFEval passes both as IFEval does and without
the answers that loop (greedy decoding at 135M loops often, and a loop can pass IFEval's checks by accident).

The `mix` arm weighs the constraints met, the judge and (negatively) the answer's length, and leaves the implicit
reward out: the signal checks found verify the only source with signal, the implicit reward inverted and the judge
pulling toward length (the goal asks for answers no longer than M0's). `--reuse ARM=RUN` links the finished
iterations of another run made with the same settings (e.g. `sft-vs-dpo`'s dpo arm, which is the `judge` arm);
`iterate --resume` then refuses it if its settings differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(os.environ.get("SRLM_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
IFEVAL, PAIRS = DATA / "ifeval" / "dev.jsonl", DATA / "alpaca_eval_prefs" / "dev.jsonl"
# `--max-repetition 1`: the arms measured before loops were ranked last (their chosen answers could be loops)
ARMS = {  # name -> iterate flags
    "judge": ["--reward", "judge", "--max-repetition", "1"],
    "judge+consistency": ["--reward", "judge", "--consistency", "--max-repetition", "1"],  # paired with `judge`
    "implicit": ["--reward", "implicit"],
    "implicit+consistency": ["--reward", "implicit", "--consistency"],
    "verify": ["--reward", "verify", "--max-repetition", "1"],
    "verify+loops-last": ["--reward", "verify"],
    # NLL on the chosen answer beside DPO's push (iterative RPO), against the displaced chosen answers seen in `mix`
    "verify+loops-last+rpo": ["--reward", "verify", "--loss", "rpo"],
    "mix": ["--reward", "mix", "--mix-verify", "1", "--mix-judge", "0.5", "--mix-implicit", "0", "--mix-length", "-0.5",
            "--max-repetition", "1"],
}
# the same interpreter and flags (a frozen copy run with `python -S` and PYTHONPATH keeps its children on it too)
CLI = [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", "srlm_lite"]


def run(args: list[str], out: Path) -> dict:
    """A srlm-lite command whose --json result is saved to `out` (skipped when `out` exists)."""
    if not out.exists():
        done = subprocess.run(CLI + args + ["--json"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-3000:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(done.stdout.strip().splitlines()[-1])
    return json.loads(out.read_text())


def evaluate(root: Path, name: str, model: list[str], judge_mode: str) -> None:
    run(["eval", "ifeval", "--prompts", str(IFEVAL), *model, "--out", str(root / f"{name}_ifeval_items.jsonl")],
        root / f"{name}_ifeval.json")
    run(["eval", "judge", "--pairs", str(PAIRS), "--judge-mode", judge_mode, *model,
         "--out", str(root / f"{name}_judge_items.jsonl")], root / f"{name}_judge.json")


def best_judge_mode(root: Path) -> str:
    """The pointwise judging format that ranks the labelled dev pairs best with M0 (the judge arms use it)."""
    accuracy = {}
    for mode in ("expected", "yesno", "forced"):
        accuracy[mode] = run(["eval", "judge", "--pairs", str(PAIRS), "--judge-mode", mode],
                             root / f"M0_judge_{mode}.json")["accuracy"]
    return max(accuracy, key=accuracy.get)


def signal_checks(root: Path, judge_mode: str, limit: int) -> None:
    """`eval reward` for each source on the first `limit` IFEval dev prompts (4 candidates each) and the dev pairs."""
    for source in ("judge", "implicit", "verify", "mix"):
        run(["eval", "reward", *ARMS[source], "--judge-mode", judge_mode, "--prompts", str(IFEVAL),
             "--limit", str(limit), "--pairs", str(PAIRS), "--samples", "4", "--max-tokens", "192"],
            root / f"signal_{source}.json")


def link_finished(source: Path, run_dir: Path) -> None:
    """Another run's finished iterations linked into a new run folder (its config with them)."""
    from srlm_lite.experiments.reuse import link_iteration
    from srlm_lite.runs import CONFIG_FILE, is_complete, iteration_dir

    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text((source / CONFIG_FILE).read_text())
    k = 1
    while is_complete(iteration_dir(source, k)):
        link_iteration(source, run_dir, k)
        print(f"iteration {k} linked from {source}", flush=True)
        k += 1


def study(root: Path, judge_mode: str | None, arms: list[str], seed: int, signal_limit: int,
          reuse: dict[str, Path]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    judge_mode = judge_mode or best_judge_mode(root)
    print(f"judging format: {judge_mode}", flush=True)
    evaluate(root, "M0", [], judge_mode)
    for name in arms:
        run_dir = root / "runs" / name.replace("+", "_")
        if name in reuse and not run_dir.exists():
            link_finished(reuse[name], run_dir)
        run(["iterate", *ARMS[name], "--judge-mode", judge_mode, "--seed", str(seed), "--out", str(run_dir),
             *(["--resume"] if run_dir.exists() else [])], root / f"{name}_run.json")
        evaluate(root, name, ["--run", str(run_dir), "--iteration", "3"], judge_mode)
        print(f"arm {name} done", flush=True)
    if signal_limit:
        signal_checks(root, judge_mode, signal_limit)


def table(root: Path) -> str:
    """The results as a markdown table (rows for the arms whose files exist)."""
    from srlm_lite.evals.ifeval import degeneracy
    from srlm_lite.evals.paired import paired_ifeval_all
    from srlm_lite.records import read_jsonl
    from srlm_lite.rewards.constraints import TRAIN_FAMILIES

    m0 = read_jsonl(root / "M0_ifeval_items.jsonl")
    lines = ["| arm | pairs/iter | IFEval prompt loose M3 (M0) | M3 - M0, seen families [95% CI] | M3 - M0, unseen "
             "families [95% CI] | loops not counted: M3 (M0), M3 - M0 [95% CI] | answers looping M3 (M0) | judge acc. "
             "M3 (M0) | IFEval answer tokens M3 (M0), at the limit | answer chars per iteration |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base_loops = degeneracy(m0)["degenerate"]
    base_judge = json.loads((root / "M0_judge.json").read_text())["accuracy"]
    base_ifeval = json.loads((root / "M0_ifeval.json").read_text())
    for name in ARMS:
        if not (root / f"{name}_judge.json").exists():
            continue
        items = read_jsonl(root / f"{name}_ifeval_items.jsonl")
        paired = paired_ifeval_all(items, m0, trained_families=TRAIN_FAMILIES)
        clean = paired["no_loop"]
        runs = json.loads((root / f"{name}_run.json").read_text())["iterations"]
        judge = json.loads((root / f"{name}_judge.json").read_text())["accuracy"]
        ifeval = json.loads((root / f"{name}_ifeval.json").read_text())
        cell = lambda r: f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] (n={r['n']})"  # noqa: E731
        lines.append(f"| {name} | {'/'.join(str(i['pairs']) for i in runs)} | {paired['all']['a']:.1%} "
                     f"({paired['all']['b']:.1%}) | {cell(paired['seen'])} | {cell(paired['unseen'])} | "
                     f"{clean['a']:.1%} ({clean['b']:.1%}), {cell(clean)} | {degeneracy(items)['degenerate']:.1%} "
                     f"({base_loops:.1%}) | {judge:.1%} ({base_judge:.1%}) | {ifeval['mean_response_tokens']:.0f} "
                     f"({base_ifeval['mean_response_tokens']:.0f}), {ifeval['truncated']} ({base_ifeval['truncated']}) | "
                     f"{' -> '.join(str(round(i['mean_response_chars'])) for i in runs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--judge-mode", help="judging format of every arm (default: the best of expected, yesno and "
                        "forced on the labelled dev pairs with M0)")
    parser.add_argument("--only", help="comma-separated arms (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signal-limit", type=int, default=60, help="IFEval prompts of each signal check (0 = none)")
    parser.add_argument("--reuse", action="append", default=[], metavar="ARM=RUN",
                        help="link RUN's finished iterations as ARM's (same settings; repeatable)")
    parser.add_argument("--table", action="store_true", help="print the table of what exists and stop")
    args = parser.parse_args()
    reuse = {arm: Path(run) for arm, run in (spec.split("=", 1) for spec in args.reuse)}
    if unknown := set(reuse) - set(ARMS):
        parser.error(f"--reuse of unknown arms {sorted(unknown)} (known: {', '.join(ARMS)})")
    if not args.table:
        study(args.out, args.judge_mode, args.only.split(",") if args.only else list(ARMS), args.seed,
              args.signal_limit, reuse)
    print(table(args.out))


if __name__ == "__main__":
    main()
