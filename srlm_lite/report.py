"""`report`: a run directory's figures as report.md, a self-contained report.html and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from .runs import MANIFEST, read_json, read_jsonl, write_text_atomic

REPORT_DIR = "report"
STAGE_FILES = {"instructions": "instructions.jsonl", "responses": "responses.jsonl", "judge": "judgments.jsonl",
               "pairs": "pairs.jsonl", "train": "train_log.jsonl"}


# ---------------------------------------------------------------- reading a run (I/O)

@dataclass
class Iteration:
    """What one `iter_K/` folder holds; for an unfinished iteration, whatever its stages have written so far."""

    t: int
    complete: bool
    manifest: dict | None
    records: dict[str, list[dict]]  # per stage: the final JSONL, or the .partial one of a stage still running
    train_summary: dict | None = None
    of: int = 0  # how many iterations the run has or plans (for colours that stay the same across plots)

    @property
    def last_stage(self) -> str | None:
        written = [s for s in STAGE_FILES if self.records[s]]
        return written[-1] if written else None

    @property
    def status(self) -> str:
        if self.complete:
            return "complete"
        stage = self.last_stage
        return f"partial (in {stage})" if stage else "partial (nothing yet)"


@dataclass
class Run:
    root: Path
    config: dict
    manifest: dict | None
    iterations: list[Iteration] = field(default_factory=list)
    evals: list[tuple[str, object]] = field(default_factory=list)


def load_run(run_dir: str | Path) -> Run:
    """Read every iteration folder (finished or not) and any evaluation results of a run directory."""
    root = Path(run_dir)
    if not (root / "config.toml").exists() and not list(root.glob("iter_*")):
        raise FileNotFoundError(f"{root} is not a srlm-lite run directory (no config.toml, no iter_* folders)")
    config = {}
    if (root / "config.toml").exists():
        import tomllib

        config = tomllib.loads((root / "config.toml").read_text(encoding="utf-8"))
    manifest = _json_or_none(root / MANIFEST)
    iterations = []
    numbers = sorted(int(p.name[5:]) for p in root.glob("iter_*") if p.is_dir() and p.name[5:].isdigit())
    for t in numbers:
        d = root / f"iter_{t}"
        records = {}
        for stage, name in STAGE_FILES.items():
            final = d / name
            records[stage] = read_jsonl(final if final.exists() else d / (name + ".partial"))
        it_manifest = _json_or_none(d / MANIFEST)
        iterations.append(Iteration(t=t, complete=it_manifest is not None, manifest=it_manifest, records=records,
                                    train_summary=_json_or_none(d / "train_summary.json"),
                                    of=max([config.get("iterations", 0), *numbers])))
    return Run(root=root, config=config, manifest=manifest, iterations=iterations, evals=find_evals(root, numbers))


def find_evals(root: Path, iterations: list[int]) -> list[tuple[str, object]]:
    """(name relative to the run, parsed JSON) of `evals/*.json` and `iter_K/eval_*.json`; unreadable files skipped."""
    paths = sorted((root / "evals").glob("*.json")) if (root / "evals").is_dir() else []
    for t in iterations:
        paths += sorted((root / f"iter_{t}").glob("eval_*.json"))
    found = []
    for path in paths:
        data = _json_or_none(path)
        if data is not None:
            found.append((str(path.relative_to(root)), data))
    return found


def _json_or_none(path: Path):
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------- figures (pure functions of records)

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


def pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def length_bias(it: Iteration) -> dict:
    """Does the judge prefer longer answers? Score-vs-length correlation and how often chosen is the longer one."""
    lengths = {r["id"]: len(r.get("response", "")) for r in it.records["responses"]}
    both = [(lengths[r["id"]], r["score"]) for r in it.records["judge"] if r.get("score") is not None
            and r["id"] in lengths]
    pairs = it.records["pairs"]
    longer = [len(p["chosen"]) > len(p["rejected"]) for p in pairs if len(p["chosen"]) != len(p["rejected"])]
    return {
        "score_length_r": pearson([a for a, _ in both], [b for _, b in both]),
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


# ---------------------------------------------------------------- plots

def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9.5, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.titlesize": 10.5, "axes.titleweight": "bold",
                         "legend.frameon": False, "legend.fontsize": 8.5})
    return plt


def _colors(its: list[Iteration]) -> list:
    """One colour per iteration, the same in every plot (dark = early, light = late)."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n = max([1, *[it.of for it in its], *[it.t for it in its]])
    return [cmap(0.15 + 0.7 * (it.t - 1) / max(1, n - 1)) for it in its]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _bar_labels(ax, bars, values, fmt="{}"):
    for bar, value in zip(bars, values):
        ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7.5, xytext=(0, 1), textcoords="offset points")


def plot_funnel(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    colors = _colors(its)
    fs = [funnel(it) for it in its]
    panels = [
        ("prompts", [("generated", "prompts_generated"), ("kept\n(dedup, filters)", "prompts_kept"),
                     ("paired", "pairs")]),
        ("candidate responses", [("sampled", "responses"), ("judged", "judged"), ("scored", "scored"),
                                 ("judge wrote\n'Score: X'", "self_parsed")]),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.4), gridspec_kw={"width_ratios": [3, 4]})
    width = 0.8 / max(1, len(its))
    for ax, (title, steps) in zip(axes, panels):
        for i, (it, f) in enumerate(zip(its, fs)):
            xs = [k + (i - (len(its) - 1) / 2) * width for k in range(len(steps))]
            values = [f[key] for _, key in steps]
            bars = ax.bar(xs, values, width * 0.95, color=colors[i], label=f"iteration {it.t}")
            _bar_labels(ax, bars, values)
        ax.set_xticks(range(len(steps)), [label for label, _ in steps])
        ax.set_title(f"data funnel: {title}")
        ax.set_ylabel("count")
        top = max((f[key] for f in fs for _, key in steps), default=0)
        ax.set_ylim(0, max(1, top) * 1.32)
    axes[0].legend(loc="upper center", ncol=min(len(its), 4))
    return _save(fig, path)


def plot_scores(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    colors = _colors(its)
    n = len(its)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 3.4 * n), 3.1), sharex=True, squeeze=False)
    bins = [b / 4 for b in range(0, 21)]
    for ax, it, color in zip(axes[0], its, colors):
        ax.hist(scores(it), bins=bins, color=color, alpha=0.55, label="all responses")
        chosen = [p["score_chosen"] for p in it.records["pairs"]]
        rejected = [p["score_rejected"] for p in it.records["pairs"]]
        if chosen:
            ax.hist(chosen, bins=bins, histtype="step", linewidth=1.8, color="#1a9850", label="chosen")
            ax.hist(rejected, bins=bins, histtype="step", linewidth=1.8, color="#d73027", linestyle="--",
                    label="rejected")
        ax.set_title(f"iteration {it.t} (M{it.t - 1} judging)")
        ax.set_xlabel("mean judge score (0-5)")
        ax.set_xlim(0, 5)
        _integer_ticks(ax.yaxis)
    axes[0][0].set_ylabel("responses")
    axes[0][-1].legend(loc="upper right")
    return _save(fig, path)


def plot_gap(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    colors = _colors(its)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.3))
    data = [gaps(it) for it in its]
    positions = list(range(1, len(its) + 1))
    nonempty = [(p, d) for p, d in zip(positions, data) if d]
    if nonempty:
        left.boxplot([d for _, d in nonempty], positions=[p for p, _ in nonempty], widths=0.5, showfliers=False,
                     medianprops={"color": "black"})
    for p, d, color in zip(positions, data, colors):
        jitter = [((k * 0.6180339) % 1 - 0.5) * 0.3 for k in range(len(d))]
        left.scatter([p + j for j in jitter], d, s=12, color=color, alpha=0.8, zorder=3)
    left.set_xticks(positions, [f"iter {it.t}" for it in its])
    left.set_ylabel("score chosen - score rejected")
    left.set_title("chosen-vs-rejected score gap per pair")
    left.axhline(0, color="grey", linewidth=0.8)
    rows = [iteration_row(it) for it in its]
    xs = [it.t for it in its]
    for key, color, marker, label in (("mean_score_chosen", "#1a9850", "^", "chosen"),
                                      ("mean_score_rejected", "#d73027", "v", "rejected"),
                                      ("mean_score", "grey", "o", "all responses")):
        ys = [r[key] if r[key] is not None else float("nan") for r in rows]
        right.plot(xs, ys, marker=marker, color=color, label=label)
    right.set_xticks(xs, [f"iter {t}" for t in xs])
    right.set_ylim(0, 5)
    right.set_ylabel("mean score (0-5)")
    right.set_title("mean judge score")
    right.legend()
    return _save(fig, path)


def plot_dpo(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    colors = _colors(its)
    metrics = (("loss", "DPO loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for ax in axes:
        _integer_ticks(ax.xaxis)
    offset = 0
    for it, color in zip(its, colors):
        log = it.records["train"]
        if not log:
            continue
        steps = [offset + r.get("step", i + 1) for i, r in enumerate(log)]
        window = max(1, len(log) // 8)
        end = (it.train_summary or {}).get("end_metrics", {})
        for ax, (key, _) in zip(axes, metrics):
            values = [r.get(key, float("nan")) for r in log]
            ax.plot(steps, values, color=color, alpha=0.35 if window > 1 else 0.9, linewidth=1,
                    marker="." if len(log) < 40 else None)
            if window > 1:
                ax.plot(steps, moving_average(values, window), color=color, linewidth=2)
            if key in end:
                ax.scatter([steps[-1] + 0.3], [end[key]], marker="*", s=90, color=color, edgecolor="black",
                           linewidth=0.5, zorder=4)
        for ax in axes:
            ax.axvline(offset + 0.5, color="grey", linewidth=0.6, linestyle=":")
            ax.annotate(f"iter {it.t}", (offset + 1, 1.0), xycoords=("data", "axes fraction"), fontsize=7.5,
                        va="top", color="dimgrey")
        offset = steps[-1]
    for ax, (_, title) in zip(axes, metrics):
        ax.set_title(title)
        ax.set_xlabel("DPO step (all iterations)")
    axes[0].axhline(math.log(2), color="grey", linewidth=0.8, linestyle="--")
    axes[0].annotate("ln 2", (1, math.log(2)), xycoords=("axes fraction", "data"), fontsize=7.5, va="bottom",
                     ha="right", color="grey")
    axes[1].set_ylim(-0.05, 1.05)
    axes[2].axhline(0, color="grey", linewidth=0.8)
    return _save(fig, path)


def plot_lengths(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    colors = _colors(its)
    fig, ax = plt.subplots(figsize=(7.5, 3.3))
    positions = list(range(1, len(its) + 1))
    data = [[len(r.get("response", "")) for r in it.records["responses"]] for it in its]
    nonempty = [(p, d, c) for p, d, c in zip(positions, data, colors) if d]
    if nonempty:
        parts = ax.boxplot([d for _, d, _ in nonempty], positions=[p for p, _, _ in nonempty], widths=0.45,
                           showfliers=False, patch_artist=True, medianprops={"color": "black"})
        for box, (_, _, color) in zip(parts["boxes"], nonempty):
            box.set_facecolor(color)
            box.set_alpha(0.55)
    for p, it in zip(positions, its):
        pairs = it.records["pairs"]
        if pairs:
            ax.scatter([p + 0.33], [statistics.fmean(len(x["chosen"]) for x in pairs)], marker="^", color="#1a9850",
                       s=45, zorder=4, label="mean chosen" if p == 1 else None)
            ax.scatter([p + 0.33], [statistics.fmean(len(x["rejected"]) for x in pairs)], marker="v",
                       color="#d73027", s=45, zorder=4, label="mean rejected" if p == 1 else None)
    labels = []
    for it in its:
        f = funnel(it)
        cut = f"\n{f['truncated'] / f['responses']:.0%} hit max_tokens" if f["responses"] else ""
        labels.append(f"iter {it.t} (M{it.t - 1} answers){cut}")
    ax.set_xticks(positions, labels)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0.4, len(its) + 0.8)
    ax.set_ylabel("response length (characters)")
    ax.set_title("response length per iteration")
    if any(it.records["pairs"] for it in its):
        ax.legend(loc="lower right")
    return _save(fig, path)


def plot_judge(its: list[Iteration], path: Path) -> Path:
    plt = _plt()
    rows = [iteration_row(it) for it in its]
    series = (("parse_rate", "wrote 'Score: X' itself", "#4575b4"), ("score_rate", "verdicts with a score", "#91bfdb"),
              ("judge_agreement", "self-agreement (2 verdicts)", "#fc8d59"),
              ("chosen_longer", "chosen is the longer answer", "#d73027"))
    fig, ax = plt.subplots(figsize=(8.5, 3.3))
    width = 0.8 / len(series)
    for k, (key, label, color) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(rows))]
        values = [r[key] for r in rows]
        bars = ax.bar(xs, [v if v is not None else 0 for v in values], width * 0.95, color=color, label=label)
        _bar_labels(ax, bars, ["n/a" if v is None else f"{v:.0%}" for v in values])
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.annotate("chance", (1.0, 0.5), xycoords=("axes fraction", "data"), fontsize=7.5, color="grey", ha="right",
                va="bottom")
    ax.set_xticks(range(len(rows)), [f"iter {r['iteration']}\n(M{r['iteration'] - 1} judging)" for r in rows])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("fraction")
    ax.set_title("the judge: parse rate, self-agreement, length preference")
    ax.legend(loc="upper left", ncol=2, bbox_to_anchor=(0, -0.22))
    return _save(fig, path)


def plot_evals(series: dict[str, dict[int, float]], path: Path) -> Path:
    """One line per metric (a fraction: accuracy, win rate, ...) over the model index k (M0..Mk)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    for name, points in sorted(series.items()):
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=name)
    ks = sorted({k for points in series.values() for k in points})
    ax.set_xticks(ks, [f"M{k}" for k in ks])
    ax.set_ylim(0, 1.02)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylabel("fraction")
    ax.set_title("evaluation results across iterations")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


# ---------------------------------------------------------------- evaluations (any JSON the eval command writes)

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


# ---------------------------------------------------------------- the document (blocks -> markdown and HTML)

def _fmt(value, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "%":
        return f"{value:.0%}"
    if kind.startswith("."):
        return format(value, kind + "f")
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


class Doc:
    """A report as a list of blocks, rendered both as Markdown and as self-contained HTML."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list]):
        self.blocks.append(("table", headers, [[str(c) for c in row] for row in rows]))

    def image(self, path: Path, alt: str, caption: str = ""):
        self.blocks.append(("img", path, alt, caption))

    def gallery(self, prompt: str, answers: list[tuple[str, str, str]]):
        self.blocks.append(("gallery", prompt, answers))

    def details(self, summary: str, items: list[tuple[str, str]]):
        self.blocks.append(("details", summary, items))

    def markdown(self) -> str:
        def quote(text: str) -> str:
            return "\n".join("> " + _md_text(line) for line in (text.strip() or "(empty)").splitlines())

        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "table":
                headers, rows = block[1], block[2]
                cell = lambda s: _md_text(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append("\n".join(["| " + " | ".join(map(cell, headers)) + " |",
                                      "|" + "---|" * len(headers)]
                                     + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1].name})" + (f"\n\n*{block[3]}*" if block[3] else ""))
            elif kind == "gallery":
                lines = [f"**Prompt:** {_md_text(block[1])}"]
                for model, text, note in block[2]:
                    lines.append(f"**{model}** {note}\n\n{quote(text)}")
                out.append("\n\n".join(lines))
            elif kind == "details":
                lines = [f"**{_md_text(block[1])}**"]
                for title, text in block[2]:
                    lines.append(f"*{title}*\n\n{quote(text)}")
                out.append("\n\n".join(lines))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in block[1])
                rows = "".join("<tr>" + "".join(f"<td{'' if _NUMERIC.match(c) else ' class=t'}>{e(c)}</td>"
                                                for c in row) + "</tr>" for row in block[2])
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                            f"</table></div>")
            elif kind == "img":
                data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
                caption = f"<figcaption>{_inline(block[3])}</figcaption>" if block[3] else ""
                body.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">{caption}</figure>')
            elif kind == "gallery":
                cards = "".join(f'<div class="card"><div class="model">{e(model)} <span class="note">{e(note)}'
                                f'</span></div><div class="text">{e(text.strip()) or "<i>(empty)</i>"}</div></div>'
                                for model, text, note in block[2])
                body.append(f'<div class="prompt"><b>Prompt:</b> {e(block[1])}</div><div class="cards">{cards}</div>')
            elif kind == "details":
                items = "".join(f'<div class="card"><div class="model">{e(t)}</div><div class="text">{e(x.strip())}'
                                f"</div></div>" for t, x in block[2])
                body.append(f'<details open><summary>{e(block[1])}</summary><div class="cards">{items}</div>'
                            f"</details>")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
                + "\n".join(body) + "\n</main></body></html>\n")


_NUMERIC = re.compile(r"^[-+]?[\d.,]+%?( -> [-+]?[\d.,]+%?)?$|^-$|^\d+/\d+$")


def _md_text(text: str) -> str:
    """Model-written text shown literally in Markdown: no raw HTML tags."""
    return text.replace("<", "&lt;")


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the report's paragraphs use: **bold** and `code`."""
    parts = html.escape(text).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#222;background:#fafafa;
margin:0;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:0.2em 0 0.4em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:1.05em;margin-top:1.3em}
p{margin:0.5em 0}code{background:#f1f1f1;padding:1px 4px;border-radius:3px;font-size:0.92em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:0.86em;margin:0.6em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;text-align:left;white-space:normal;vertical-align:bottom}
td:first-child,td.t{text-align:left}td.t{white-space:normal;min-width:6em}
figure{margin:0.8em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.86em;color:#555;margin-top:2px}
.prompt{margin:1em 0 0.4em;padding:6px 10px;background:#eef3fb;border-left:3px solid #4575b4}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;background:#fcfcfc}
.card .model{font-weight:bold;margin-bottom:4px}.card .note{font-weight:normal;color:#777;font-size:0.85em}
.card .text{white-space:pre-wrap;font-size:0.88em;max-height:24em;overflow-y:auto}
details{margin:0.6em 0}summary{cursor:pointer;font-weight:bold}
"""


# ---------------------------------------------------------------- putting it together

@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    plots: list[Path]
    iterations: list[dict]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *,
                 gallery: list[dict] | None = None) -> ReportFiles:
    """Write report.md, report.html (PNGs inlined) and the PNG plots for a run; `gallery` = gallery.py's records."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir else run.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    its = [it for it in run.iterations if it.records["instructions"] or it.complete]
    rows = [iteration_row(it) for it in its]
    doc = Doc(out)
    plots: list[Path] = []
    _header(doc, run, rows)
    if not its:
        doc.p("This run has no iteration with any output yet.")
    else:
        _summary(doc, rows)
        plots += _sections(doc, run, its, rows, out)
    plots += _evals_section(doc, run, out)
    _gallery_section(doc, gallery)
    _examples_section(doc, its)
    md = write_text_atomic(out / "report.md", doc.markdown())
    page = write_text_atomic(out / "report.html", doc.html(f"srlm-lite report: {run.root.name}"))
    return ReportFiles(markdown=md, html=page, plots=plots, iterations=rows)


def _header(doc: Doc, run: Run, rows: list[dict]):
    c = run.config
    planned = c.get("iterations")
    done = sum(r["status"] == "complete" for r in rows)
    doc.h(1, f"srlm-lite run report: {run.root.name}")
    model = (run.manifest or {}).get("model") or (c.get("model", {}).get("path") or "the embedded SmolLM2-135M")
    state = "finished" if run.manifest else "unfinished (no run manifest yet)"
    doc.p(f"Run directory `{run.root}`, model `{model}`, seed {c.get('seed', '-')}. "
          f"{done} of {planned if planned is not None else '?'} iterations complete; the run is {state}. "
          f"Iteration t samples, judges and trains with M_(t-1) and produces M_t (M0 is the base model).")
    if c:
        ins, res, jud, tr = (c.get(k, {}) for k in ("instructions", "responses", "judge", "train"))
        doc.p(f"Settings: {ins.get('num_prompts', '-')} prompts kept per iteration, {res.get('samples', '-')} "
              f"candidates each (T={res.get('temperature', '-')}, max {res.get('max_tokens', '-')} tokens), "
              f"{jud.get('judge_samples', '-')} verdict(s) per candidate (judge mode `{jud.get('mode', '-')}`), "
              f"loss `{tr.get('loss', 'sigmoid')}`{' (length-normalized)' if tr.get('length_normalize') else ''}, "
              f"beta {tr.get('beta', '-')}, learning rate {tr.get('learning_rate', '-')}, "
              f"{tr.get('epochs', '-')} epoch(s), LoRA rank {tr.get('lora_rank', '-')}"
              + (f"; started from the adapter `{c['init']}`" if c.get("init") else "") + ".")
    versions = (run.manifest or {}).get("versions")
    if versions:
        doc.p("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".")


def _arrow(start: str, end: str) -> str:
    return "-" if start == end == "-" else f"{start} -> {end}"


def _summary(doc: Doc, rows: list[dict]):
    doc.h(2, "Summary")
    doc.table(
        ["iteration", "status", "prompts kept", "responses", "parse rate", "scored", "pairs", "chosen", "rejected",
         "DPO loss", "reward acc.", "resp. chars", "minutes"],
        [[r["iteration"], r["status"], f"{r['prompts_kept']}/{r['prompts_generated']}", r["responses"],
          _fmt(r["parse_rate"], "%"), _fmt(r["score_rate"], "%"), r["pairs"], _fmt(r["mean_score_chosen"], ".2"),
          _fmt(r["mean_score_rejected"], ".2"), _arrow(_fmt(r["dpo_loss_start"]), _fmt(r["dpo_loss_end"])),
          _arrow(_fmt(r["reward_accuracy_start"], ".2"), _fmt(r["reward_accuracy_end"], ".2")),
          _fmt(r["mean_response_chars"], ".0"), _fmt(sum(r["seconds"].values()) / 60 if r["seconds"] else None, ".1")]
         for r in rows])
    done = [r for r in rows if r["status"] == "complete"]
    if done:
        trend = lambda key, kind="": " -> ".join(_fmt(r[key], kind) for r in done)  # noqa: E731
        doc.p(f"Over the complete iterations ({', '.join(str(r['iteration']) for r in done)}): mean response length "
              f"{trend('mean_response_chars', '.0')} characters; mean judge score {trend('mean_score', '.2')}; "
              f"pairs {trend('pairs')}; the chosen answer is the longer one in {trend('chosen_longer', '%')} of "
              f"pairs. 'parse rate' counts verdicts in which the judge wrote 'Score: X' itself; 'scored' those "
              f"with a score at all.")


def _sections(doc: Doc, run: Run, its: list[Iteration], rows: list[dict], out: Path) -> list[Path]:
    plots = []
    doc.h(2, "Data funnel")
    plots.append(plot_funnel(its, out / "funnel.png"))
    doc.image(plots[-1], "data funnel per iteration",
              "How many prompts and responses survive each step. 'kept' drops ROUGE-L near-duplicates and "
              "too short/long prompts; 'scored' responses have a mean judge score; 'judge wrote Score: X' counts "
              "responses with at least one verdict whose score the judge wrote itself (the rest are read from its "
              "digit distribution after a forced 'Score: ').")
    funnels = [funnel(it) for it in its]
    doc.table(["iteration", "prompts generated", "kept", "dropped (why)", "responses", "hit max_tokens", "judged",
               "verdicts", "own 'Score: X'", "scored verdicts", "pairs", "pair outcomes"],
              [[it.t, f["prompts_generated"], f["prompts_kept"],
                ", ".join(f"{k} {v}" for k, v in f["dropped"].items()) or "-", f["responses"], f["truncated"],
                f["judged"], f["verdicts"], f["verdicts_parsed"], f["verdicts_scored"], f["pairs"],
                ", ".join(f"{k} {v}" for k, v in f["pair_outcomes"].items()) or "-"]
               for it, f in zip(its, funnels)])

    judged = [it for it in its if scores(it)]
    paired = [it for it in its if it.records["pairs"]]
    doc.h(2, "Judge scores")
    if judged:
        plots.append(plot_scores(judged, out / "scores.png"))
        doc.image(plots[-1], "score histograms",
                  "Mean judge score of every candidate (filled), and of the chosen (green) and rejected (red, dashed) "
                  "answer of each pair.")
    if paired:
        plots.append(plot_gap(paired, out / "score_gap.png"))
        doc.image(plots[-1], "chosen vs rejected score gap",
                  "Left: the score gap of every pair (chosen minus rejected). Right: mean scores per iteration.")
    if not judged:
        doc.p("No response has been judged yet.")

    doc.h(2, "DPO training")
    if any(it.records["train"] for it in its):
        plots.append(plot_dpo(its, out / "dpo.png"))
        doc.image(plots[-1], "DPO curves",
                  "Per step (batch) of each iteration's DPO: loss (starts at ln 2: the policy equals the reference "
                  "M_(t-1)), reward accuracy (fraction of pairs with chosen reward > rejected reward) and reward "
                  "margin. Thick lines are moving averages. A step's values are measured before its update, so "
                  "in the first epoch they are on pairs the model has not trained on yet (a held-out view); the "
                  "stars are the end values on all the training pairs after training (how well it fits them).")
        doc.table(["iteration", "steps", "loss start", "loss end", "reward acc. start", "reward acc. end",
                   "margin end"],
                  [[r["iteration"], r["train_steps"], _fmt(r["dpo_loss_start"]), _fmt(r["dpo_loss_end"]),
                    _fmt(r["reward_accuracy_start"], ".2"), _fmt(r["reward_accuracy_end"], ".2"),
                    _fmt(r["margin_end"], ".2")]
                   for r in rows])
    else:
        doc.p("No DPO step has been logged yet.")

    doc.h(2, "Response length")
    plots.append(plot_lengths([it for it in its if it.records["responses"]] or its, out / "lengths.png"))
    doc.image(plots[-1], "response length per iteration",
              "Characters per candidate response written by M_(t-1) in iteration t (box: quartiles), with the "
              "mean length of chosen and rejected answers. The paper saw responses grow every iteration.")
    doc.table(["iteration", "mean chars", "mean tokens", "hit max_tokens", "chosen is longer", "r(score, length)"],
              [[r["iteration"], _fmt(r["mean_response_chars"], ".0"), _fmt(r["mean_response_tokens"], ".1"),
                _fmt(r["truncated"], "%"), _fmt(r["chosen_longer"], "%"), _fmt(r["score_length_r"], ".2")]
               for r in rows])

    doc.h(2, "The judge")
    plots.append(plot_judge(judged or its, out / "judge.png"))
    doc.image(plots[-1], "judge agreement",
              "Parse rate: verdicts in which the judge wrote 'Score: X' itself. Self-agreement: how often two "
              "independent verdicts of the judge order two answers to the same prompt the same way (50% = chance). "
              "Length preference: how often the chosen answer is the longer one. A small model's judge is the "
              "method's weak point (README, 'The judge, honestly'): its accuracy on labelled pairs, when measured "
              "with `srlm-lite eval judge`, appears under Evaluations.")
    doc.table(["iteration", "judged by", "parse rate", "score rate", "self-agreement", "verdict spread (sd)",
               "chosen is longer", "r(score, length)"],
              [[r["iteration"], f"M{r['iteration'] - 1}", _fmt(r["parse_rate"], "%"), _fmt(r["score_rate"], "%"),
                _fmt(r["judge_agreement"], "%"), _fmt(r["verdict_spread"], ".2"), _fmt(r["chosen_longer"], "%"),
                _fmt(r["score_length_r"], ".2")] for r in rows])

    timed = [r for r in rows if r["seconds"]]
    if timed:
        doc.h(2, "Time per stage")
        stages = list(dict.fromkeys(k for r in timed for k in r["seconds"]))
        doc.table(["iteration", *stages, "total (min)"],
                  [[r["iteration"], *[_fmt(r["seconds"].get(s), ".1") for s in stages],
                    f"{sum(r['seconds'].values()) / 60:.1f}"] for r in timed])
        doc.p("Seconds per stage, from each iteration's manifest.")
    return plots


def _evals_section(doc: Doc, run: Run, out: Path) -> list[Path]:
    doc.h(2, "Evaluations")
    if not run.evals:
        doc.p("No evaluations run yet (none found in `evals/*.json` or `iter_K/eval_*.json`; "
              "e.g. `srlm-lite eval ... --json > RUN/evals/judge_M1.json` puts one here).")
        return []
    plots = []
    series = eval_series(run.evals)
    if series:
        plots.append(plot_evals(series, out / "evals.png"))
        doc.image(plots[-1], "evaluation results across iterations",
                  "Every accuracy or rate found in the evaluation files, per model (dashed: 0.5).")
    kinds: dict[str, list[tuple[str, object]]] = {}
    for name, data in run.evals:
        kinds.setdefault(eval_kind(name), []).append((name, data))
    for kind, files in kinds.items():
        doc.h(3, kind)
        singles = [(n, d) for n, d in files if isinstance(d, dict) and not eval_rows(d)]
        if singles:  # one result per file: a column per file (per model), a row per field
            columns = [(n, flatten(d)) for n, d in singles]
            labels = [f"M{k}" if (k := model_index(flat, n)) is not None else n for n, flat in columns]
            fields = list(dict.fromkeys(key for _, flat in columns for key in flat))[:40]
            doc.table(["field", *labels], [[f, *[_short(_fmt(flat.get(f))) for _, flat in columns]] for f in fields])
            doc.p("From " + ", ".join(f"`{n}`" for n, _ in singles) + ".")
        for name, data in files:
            rows = eval_rows(data)
            if rows:
                headers = list(dict.fromkeys(k for r in rows for k in r))[:14]
                doc.p(f"`{name}`:")
                doc.table(headers, [[_short(_fmt(r.get(h))) for h in headers] for r in rows])
                rest = {k: v for k, v in flatten(data).items() if not str(v).startswith("(list")}
                if rest:
                    doc.table(["field", "value"], [[k, _short(_fmt(v))] for k, v in rest.items()])
            elif not isinstance(data, dict):
                doc.p(f"`{name}`: `{json.dumps(data)[:300]}`")
    return plots


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gallery_section(doc: Doc, gallery: list[dict] | None):
    doc.h(2, "Gallery: the same prompts answered by M0..Mk")
    if not gallery:
        doc.p("No gallery in this report (rendered with `--no-gallery`, or no model was available).")
        return
    settings = gallery[0]
    doc.p(f"Prompts from the shipped seed pool, answered by every model of the run with the same settings "
          f"(temperature {settings.get('temperature')}, seed {settings.get('seed')}, at most "
          f"{settings.get('max_tokens')} tokens). M0 is the base model; M_k = base + the LoRA trained in iteration k.")
    by_prompt: dict[str, list[dict]] = {}
    for record in gallery:
        by_prompt.setdefault(record["prompt_id"], []).append(record)
    for records in by_prompt.values():
        records.sort(key=lambda r: r["k"])
        doc.gallery(records[0]["prompt"], [(f"M{r['k']}", r["response"],
                                            f"{r['n_tokens']} tokens" + (", cut at max_tokens"
                                                                         if r["finish_reason"] == "length" else ""))
                                           for r in records])


def _examples_section(doc: Doc, its: list[Iteration]):
    with_pairs = [it for it in its if it.records["pairs"]]
    if not with_pairs:
        return
    doc.h(2, "What the judge preferred")
    doc.p("For each iteration, the pair with the widest score gap: the answer the judge chose and the one it rejected.")
    for it in with_pairs:
        pair = max(it.records["pairs"], key=lambda p: p["score_chosen"] - p["score_rejected"])
        doc.details(f"iteration {it.t}: {pair['prompt'][:160]}",
                    [(f"chosen (score {pair['score_chosen']:.2f})", pair["chosen"]),
                     (f"rejected (score {pair['score_rejected']:.2f})", pair["rejected"])])
