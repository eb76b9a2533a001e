"""Do two checkouts of srlm-lite write the same records? A small real `iterate` in each, compared byte for byte.

    python tests/tools/same_records.py --ref 9bfd22e            # that commit (a git worktree) vs this checkout
    python tests/tools/same_records.py --ref A --other B         # two commits
    python tests/tools/same_records.py --keep runs/same_records  # keep both run directories for a look

Each side runs 2 iterations of a small config with a fixed seed on the embedded model, from its own source tree
(`python -S` with the tree first on the path and this environment's site-packages after it, so an editable install
of the other tree cannot leak in). Compared: `instructions`, `responses`, `judgments` and `pairs` of every
iteration, after removing timing fields. Exit code 0 when all are identical, 1 otherwise (the first differing
record of each file is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

FILES = ("instructions.jsonl", "responses.jsonl", "judgments.jsonl", "pairs.jsonl")
TIMING_KEYS = ("seconds", "elapsed", "started_at", "written_at")
CONFIG = {
    "iterations": 2, "seed": 1234,
    "instructions": {"num_prompts": 4, "max_attempts": 16},
    "responses": {"samples": 4, "max_tokens": 48},
    "judge": {"mode": "expected"},
    "train": {"batch_size": 2},
}
RUNNER = """
import sys, json
sys.path[:0] = [{tree!r}]
sys.path += {site!r}
from srlm_lite.config import from_dict
from pathlib import Path
from srlm_lite.loop import iterate
iterate(from_dict(json.loads({config!r})), Path({out!r}))
"""


def run_side(tree: Path, out: Path) -> None:
    """A small real run from the source tree `tree` into `out` (a fresh interpreter without .pth processing)."""
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    code = RUNNER.format(tree=str(tree), site=list(dict.fromkeys(paths)), config=json.dumps(CONFIG), out=str(out))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-S", "-c", code], check=True, cwd=tree, env=env)


def normalized(path: Path) -> list[str]:
    """The file's records without timing fields, one canonical JSON text each."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.dumps({k: v for k, v in r.items() if k not in TIMING_KEYS}, sort_keys=True) for r in records]


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two run directories' records; empty when identical."""
    problems = []
    for t in range(1, CONFIG["iterations"] + 1):
        for name in FILES:
            left, right = normalized(a / f"iter_{t}" / name), normalized(b / f"iter_{t}" / name)
            if not left:
                problems.append(f"iter_{t}/{name}: missing on the first side")
            if left == right:
                continue
            first = next((i for i, (x, y) in enumerate(zip(left, right)) if x != y), min(len(left), len(right)))
            problems.append(f"iter_{t}/{name}: {len(left)} vs {len(right)} records, first difference at record "
                            f"{first}:\n  {left[first] if first < len(left) else '-'}\n  "
                            f"{right[first] if first < len(right) else '-'}")
    return problems


def worktree(repo: Path, ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(where), ref], check=True,
                   capture_output=True)
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="git commit (or branch) of the first side")
    parser.add_argument("--other", help="git commit of the second side (default: this checkout as it is)")
    parser.add_argument("--keep", help="keep the two run directories under this folder")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    scratch = Path(tempfile.mkdtemp(prefix="srlm-same-"))
    trees = []
    try:
        trees.append(worktree(repo, args.ref, scratch / "a"))
        trees.append(worktree(repo, args.other, scratch / "b") if args.other else repo)
        runs = [scratch / "run_a", scratch / "run_b"]
        for tree, out in zip(trees, runs):
            print(f"running {tree} -> {out}", flush=True)
            run_side(tree, out)
        problems = compare(*runs)
        if args.keep:
            for out in runs:
                shutil.copytree(out, Path(args.keep) / out.name, dirs_exist_ok=True)
    finally:
        for tree in trees:
            if tree != repo:
                subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    for problem in problems:
        print(problem)
    counts = {name: len(normalized(Path(args.keep) / "run_a" / "iter_1" / name)) for name in FILES} if args.keep \
        else None
    print("identical" if not problems else f"{len(problems)} file(s) differ", counts or "")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
