"""The experiment report's PNG plots, in `report.plots`'s style: one line per arm per measure across M_0..M_K."""

from __future__ import annotations

from pathlib import Path

from ..report.plots import _plt, _save
from ..stats import Z_95

ARM_COLORS = ("#4575b4", "#d73027", "#1a9850", "#984ea3", "#ff7f00", "#a65628")
PANELS = (
    ("kl_to_m0", "KL(M_k || M0), nats", None),
    ("ifeval_prompt_loose", "IFEval, prompt-level loose", (0, 1)),
    ("judge_accuracy", "own judge on labelled pairs", (0, 1)),
    ("distinct_2", "distinct-2 (diversity)", (0, 1)),
    ("repetition", "repetition (seq-rep-4)", (0, None)),
    ("mean_tokens", "mean answer tokens", (0, None)),
    ("at_limit", "answers cut at the token limit", (0, 1)),
)


def arm_colors(arms) -> dict[str, str]:
    return {arm: ARM_COLORS[i % len(ARM_COLORS)] for i, arm in enumerate(arms)}


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
    return [k for k, _ in points], [v for _, v in points]


def plot_measures(arms: dict[str, list[dict]], path: Path) -> Path:
    """Seven panels (KL with 95% error bars, IFEval, judge accuracy, distinct-2, repetition, length, cut answers),
    x = the model M_k, one line per arm."""
    plt = _plt()
    colors = arm_colors(arms)
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.6))
    flat = axes.flat
    for ax, (key, title, limits) in zip(flat, PANELS):
        for arm, rows in arms.items():
            ks, values = _series(rows, key)
            if key == "kl_to_m0":
                errors = [Z_95 * (r.get("kl_se") or 0.0) for r in rows if r.get(key) is not None]
                ax.errorbar(ks, values, yerr=errors, marker="o", color=colors[arm], label=arm, capsize=3)
            else:
                ax.plot(ks, values, marker="o", color=colors[arm], label=arm)
        if key == "judge_accuracy":
            ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(title)
        _model_axis(ax, arms)
        if limits:
            ax.set_ylim(bottom=limits[0], top=limits[1])
    legend_ax = axes.flat[len(PANELS)]
    legend_ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", title="arm")
    return _save(fig, path)


def plot_training(arms: dict[str, list[dict]], path: Path) -> Path:
    """What each iteration's training did to its own pairs: left, the change in log p(chosen) (solid) and log
    p(rejected) (dashed) from M_{k-1} to M_k on the trained pairs, in nats; right, on the pairs held out of training,
    the share whose chosen answer gained on the rejected one (chance 0.5). One colour per arm."""
    plt = _plt()
    colors = arm_colors(arms)
    fig, (ax, held) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    for arm, rows in arms.items():
        for key, style, marker, what in (("delta_logp_chosen", "-", "^", "chosen"),
                                         ("delta_logp_rejected", "--", "v", "rejected")):
            ks, values = _series(rows, key)
            ax.plot(ks, values, linestyle=style, marker=marker, color=colors[arm], label=f"{arm}: {what}")
        ks, values = _series(rows, "heldout_reward_accuracy")
        held.plot(ks, values, marker="o", color=colors[arm], label=arm)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("change in log-prob (nats)")
    ax.set_title("trained pairs: chosen (solid) and rejected (dashed) answers")
    held.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    held.set_ylim(0, 1)
    held.set_title("held-out pairs: chosen gained on rejected")
    for axis in (ax, held):
        _model_axis(axis, arms, start=1)
    ax.legend(fontsize=7.5, loc="best")
    held.legend(fontsize=7.5, loc="lower right")
    return _save(fig, path)


def plot_jvg(rows: list[dict], path: Path) -> Path:
    """Left: share of candidates passing IFEval's checks (a random pick), the judge's pick of N, and the best any
    pick could do. Right: how often the judge ranks a passing candidate above a failing one, against 'the longer
    wins', with 95% intervals; chance 0.5."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    ks = [r["iteration"] for r in rows if r.get("generate_pass") is not None]
    rows = [r for r in rows if r.get("generate_pass") is not None]
    width = 0.26
    for i, (key, label, color) in enumerate((("generate_pass", "generating (a random candidate)", "#91bfdb"),
                                             ("best_of_n_pass", "its judge's pick of N", "#4575b4"),
                                             ("oracle_pass", "best possible pick of N", "#cccccc"))):
        bars = left.bar([k + (i - 1) * width for k in ks], [r[key] for r in rows], width * 0.95, color=color,
                        label=label)
        for bar, r in zip(bars, rows):
            left.annotate(f"{r[key]:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                          va="bottom", fontsize=7.5)
    left.set_title("answers passing IFEval's checks")
    left.set_ylim(0, 1)
    left.legend(loc="upper left")
    for key, label, color, shift in (("recognise", "its judge: passing > failing", "#4575b4", -0.08),
                                     ("longer_wins", "'the longer wins'", "#d73027", 0.08)):
        known = [r for r in rows if r.get(key) is not None]  # None: no prompt had a passing and a failing answer
        if not known:
            continue
        errors = _ci_errors(known, key) if key == "recognise" else None
        right.errorbar([r["iteration"] + shift for r in known], [r[key] for r in known], yerr=errors, marker="o",
                       linestyle="", capsize=3, color=color, label=label)
    right.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    right.set_ylim(0, 1)
    right.set_title("recognising: pairs of one prompt's candidates")
    if right.get_legend_handles_labels()[0]:
        right.legend(loc="lower left")
    for ax in (left, right):
        ax.set_xticks(ks, [f"M{k}" for k in ks])
        if ks:
            ax.set_xlim(min(ks) - 0.5, max(ks) + 0.5)  # one model alone keeps its points beside its tick
    return _save(fig, path)


def _ci_errors(rows: list[dict], key: str):
    bounds = [(r[key] if low is None else low, r[key] if high is None else high) for r in rows
              for low, high in [r[f"{key}_ci"]]]
    return [[r[key] - low for r, (low, _) in zip(rows, bounds)], [high - r[key] for r, (_, high) in zip(rows, bounds)]]


def _model_axis(ax, arms: dict[str, list[dict]], start: int = 0) -> None:
    ks = sorted({r["iteration"] for rows in arms.values() for r in rows if r["iteration"] >= start})
    if ks:
        ax.set_xticks(ks, [f"M{k}" for k in ks])
