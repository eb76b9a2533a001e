"""The report's PNG plots (matplotlib, Agg backend): one function per figure, each of an iteration list."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .load import Iteration
from .metrics import funnel, gaps, iteration_row, moving_average, scores


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
