"""The side-by-side report of an experiment: report.md, a self-contained report.html and PNG plots (the `report`
package's `Doc` and plotting style): the claim, the arms, the figures of the last models, one line per arm per
measure, the full table, and the same prompts answered by M0 and by every arm's last model."""

from __future__ import annotations

from pathlib import Path

from ..records import write_text_atomic
from ..report.render import Doc, fmt
from ..stats import Z_95
from .plots import plot_jvg, plot_measures, plot_training

REPORT_DIR = "report"
QUICK_NOTE = (" **A quick run shows the mechanics, not the conclusions:** with this few prompts and items, differences "
              "between arms are within noise (see the intervals).")
COLUMNS = (("KL to M0 (nats)", "kl_to_m0", ".2"), ("± 95%", "kl_ci", ".2"), ("distinct-2", "distinct_2", ".3"),
           ("repetition", "repetition", ".3"), ("tokens", "mean_tokens", ".1"), ("cut", "at_limit", "%"),
           ("IFEval loose", "ifeval_prompt_loose", "%"), ("IFEval, loops not counted", "ifeval_prompt_loose_nondegenerate",
                                                              "%"),
           ("IFEval answers looping", "ifeval_degenerate", "%"), ("judge acc.", "judge_accuracy", "%"),
           ("pairs", "pairs", ""), ("Δ log p chosen", "delta_logp_chosen", ".1"),
           ("Δ log p rejected", "delta_logp_rejected", ".1"),
           ("held-out: chosen gained", "heldout_reward_accuracy", "%"), ("held-out margin", "heldout_margin", ".1"))
JVG_COLUMNS = (("generating: candidates passing", "generate_pass", "%"), ("judge's pick of N", "best_of_n_pass", "%"),
               ("best pick of N", "oracle_pass", "%"), ("judge's pick - random", "best_minus_random", ".3"),
               ("judge: passing > failing", "recognise", "%"), ("'longer wins'", "longer_wins", "%"),
               ("prompts (mixed)", "jvg_mixed", ""))


def write_experiment_report(out: str | Path, results: dict) -> dict:
    """Write the report into `out`/report; {"markdown", "html", "plots"}."""
    target = Path(out) / REPORT_DIR
    target.mkdir(parents=True, exist_ok=True)
    plan, arms = results["plan"], results["arms"]
    doc = Doc(target)
    doc.h(1, f"Experiment `{results['experiment']}`")
    doc.p(f"**Claim.** {plan['claim']}")
    doc.p(f"**Question.** {plan['question']}")
    doc.p(_settings(plan))
    if results.get("unfinished"):
        doc.p(f"**Unfinished.** {results['unfinished']}")
    if results.get("reused"):
        doc.p(_reused(results["reused"]))
    doc.table(["arm", "what it is"], [[name, arm["label"]] for name, arm in plan["arms"].items()])
    doc.h(2, "What the figures say")
    for line in headline(arms):
        doc.p(line)
    plots = _plots(doc, arms, target)
    doc.h(2, "Every model")
    doc.table(["arm", "model"] + [c[0] for c in COLUMNS],
              [[arm, f"M{r['iteration']}"] + [fmt(_value(r, key), kind) for _, key, kind in COLUMNS]
               for arm, rows in arms.items() for r in rows])
    doc.p(_legend())
    _paired(doc, results.get("paired") or [])
    _time(doc, results.get("time"))
    _gallery(doc, results)
    md = write_text_atomic(target / "report.md", doc.markdown())
    page = write_text_atomic(target / "report.html", doc.html(f"srlm-lite experiment: {results['experiment']}"))
    return {"markdown": md, "html": page, "plots": plots}


def _reused(reused: dict) -> str:
    """What was taken from other experiments (`--reuse`), said once: which iterations and measures."""
    iterations, measures = sorted(reused.get("iterations", {})), sorted(reused.get("measures", {}))
    return (f"**Reused.** {len(iterations)} iteration(s) ({', '.join(iterations) or 'none'}) and {len(measures)} "
            f"measure(s) ({', '.join(measures) or 'none'}) were taken from work another experiment had finished with "
            f"the same model, seed and settings, instead of being made again (reused.json names the folders).")


def headline(arms: dict[str, list[dict]]) -> list[str]:
    """One sentence per arm: its last model against M0, every figure measured (nothing inferred)."""
    lines = []
    for arm, rows in arms.items():
        if len(rows) < 2:
            lines.append(f"**{arm}**: not measured beyond M0 yet.")
            continue
        first, last = rows[0], rows[-1]
        k = last["iteration"]
        kl = (f"KL(M{k} || M0) = {fmt(last['kl_to_m0'], '.2')} ± {fmt(_value(last, 'kl_ci'), '.2')} nats per answer "
              f"(95%)"
              if last.get("kl_to_m0") is not None else "KL not measured")
        lines.append(
            f"**{arm}** after {k} iteration(s): {kl}; IFEval {_change(first, last, 'ifeval_prompt_loose', '%')} "
            f"(n={last.get('ifeval_n')}; loops not counted "
            f"{_change(first, last, 'ifeval_prompt_loose_nondegenerate', '%')}); own judge {_change(first, last, 'judge_accuracy', '%')} "
            f"(n={last.get('judge_n')}, 95% CI {fmt(last.get('judge_ci_low'), '%')}-"
            f"{fmt(last.get('judge_ci_high'), '%')}); "
            f"answer tokens {_change(first, last, 'mean_tokens', '.0')}; distinct-2 "
            f"{_change(first, last, 'distinct_2', '.3')}; repetition {_change(first, last, 'repetition', '.3')}.")
    return lines


def _change(first: dict, last: dict, key: str, kind: str) -> str:
    return f"{fmt(first.get(key), kind)} -> {fmt(last.get(key), kind)}"


def _value(row: dict, key: str):
    if key == "kl_ci":
        return None if row.get("kl_se") is None else Z_95 * row["kl_se"]
    if key == "jvg_mixed":
        return None if row.get("jvg_prompts") is None else f"{row['jvg_prompts']} ({row['jvg_mixed_prompts']})"
    return row.get(key)


def _plots(doc: Doc, arms: dict[str, list[dict]], target: Path) -> list[Path]:
    plots = [plot_measures(arms, target / "measures.png")]
    doc.image(plots[-1], "measures per arm across iterations",
              "One line per arm; M0 is common to all. KL error bars: 95% (1.96 standard errors).")
    if any(r.get("delta_logp_chosen") is not None for rows in arms.values() for r in rows):
        plots.append(plot_training(arms, target / "training.png"))
        doc.image(plots[-1], "log-prob changes of chosen and rejected answers",
                  "End of each iteration's training, on its own pairs, against the model it started from.")
    for arm, rows in arms.items():
        if any(r.get("generate_pass") is not None for r in rows):
            doc.h(2, f"Judging against generating ({arm})")
            plots.append(plot_jvg(rows, target / f"judge_vs_generate_{arm}.png"))
            doc.image(plots[-1], "judging against generating", "Pass = every IFEval instruction followed (loose).")
            doc.table(["model"] + [c[0] for c in JVG_COLUMNS],
                      [[f"M{r['iteration']}"] + [fmt(_value(r, key), kind) for _, key, kind in JVG_COLUMNS]
                       for r in rows if r.get("generate_pass") is not None])
    return plots


def _settings(plan: dict) -> str:
    measures, data = plan["measures"], plan["data"]
    config = next(iter(plan["arms"].values()))["config"]
    return (f"Preset `{plan['preset']}`: {plan['iterations']} iteration(s) per arm, "
            f"{config['instructions']['num_prompts']} self-instructed prompts x {config['responses']['samples']} "
            f"candidates, judge `{config['judge']['mode']}`, "
            f"seed {config['seed']}; every arm starts from the same M0 with the same seeds, and arms that differ "
            f"only in training share iteration 1's data. Measured on data never trained on: "
            f"{measures['drift_prompts']} prompts x {measures['drift_samples']} answers at temperature 1 from "
            f"`{data['drift']}` (KL, diversity, length), the first {measures['ifeval_prompts']} IFEval prompts "
            f"(greedy, {measures['ifeval_max_tokens']} tokens) and the first {measures['judge_pairs']} labelled pairs "
            f"of `{data['pairs']}`." + (QUICK_NOTE if plan["preset"] == "quick" else ""))


def _legend() -> str:
    return ("KL: mean over M_k's sampled answers of log M_k(y) - log M0(y) (the end-of-turn token left out). "
            "distinct-2: distinct word bigrams / all bigrams. repetition: the share of an answer's word 4-grams "
            "that repeat. cut: answers that hit the token limit. IFEval answers looping: greedy IFEval answers "
            "more than half of whose word 4-grams repeat an earlier one; *loops not counted*: the prompts passed by "
            "an answer that is not a loop. Δ log p: how training changed the summed "
            "log-prob of its pairs' chosen and rejected answers (DPO's reward / beta). held-out: on the pairs of "
            "that iteration kept out of training, the share whose chosen answer gained on the rejected one, and the "
            "mean gain in nats.")


def _paired(doc: Doc, comparisons: list[dict]) -> None:
    """The last models compared item by item (the same IFEval prompts, the same labelled pairs)."""
    rows = []
    for c in comparisons:
        ifeval, clean, judge = (c.get(key) or {} for key in ("ifeval", "ifeval_nondegenerate", "judge"))
        rows.append([f"{c['a']} vs {c['b']}", f"{fmt(ifeval.get('a'), '%')} / {fmt(ifeval.get('b'), '%')}",
                     _interval(ifeval), f"{ifeval.get('a_only', '-')} / {ifeval.get('b_only', '-')}",
                     fmt(ifeval.get("p_value"), ".3"), f"{fmt(clean.get('a'), '%')} / {fmt(clean.get('b'), '%')}",
                     _interval(clean), f"{fmt(judge.get('a'), '%')} / {fmt(judge.get('b'), '%')}", _interval(judge)])
    if not rows:
        return
    doc.h(2, "Prompt by prompt: the last models compared on the same items")
    doc.table(["A vs B", "IFEval loose A / B", "difference [95% CI]", "prompts only A / only B passes",
               "McNemar p", "IFEval, loops not counted A / B", "difference [95% CI]", "judge accuracy A / B",
               "difference [95% CI]"], rows)
    doc.p("Differences are A - B over the same items, with a paired-bootstrap 95% interval; McNemar's exact test "
          "counts the prompts that only one of the two models passes. An interval that contains 0 is no evidence of "
          "a difference. *Loops not counted*: a prompt passes only when its answer is not a loop (more than half of "
          "its word 4-grams repeat an earlier one): greedy decoding at this size loops often, and a loop can pass "
          "IFEval's checks by accident.")
    _paired_generate(doc, comparisons)


def _paired_generate(doc: Doc, comparisons: list[dict]) -> None:
    """Judge-vs-generate's sampled candidates, the same IFEval prompts for both models."""
    rows = [[f"{c['a']} vs {c['b']}", f"{fmt(g.get('a'), '%')} / {fmt(g.get('b'), '%')}", _interval(g),
             f"{g.get('n_better', '-')} / {g.get('n_worse', '-')}", g.get("n")]
            for c in comparisons if (g := c.get("generate"))]
    if not rows:
        return
    doc.table(["A vs B", "generating: candidates passing A / B", "difference [95% CI]",
               "prompts where A / B passes more", "prompts"], rows)
    doc.p("Judge-vs-generate's candidates: per prompt, the share of its candidates that pass every IFEval "
          "instruction; the difference is A - B over the same prompts.")


def _time(doc: Doc, time: dict | None) -> None:
    """Minutes per arm per iteration: its loop (sample, judge, train) and its model's measures."""
    if not time or not time["total"]:
        return
    minutes = lambda s: "-" if s is None else f"{s / 60:.1f}"  # noqa: E731
    rows = [[arm, f"M{r['iteration']}", minutes(r["run"]), minutes(r["measures"])]
            for arm, runs in time["arms"].items() for r in runs if r["run"] is not None or r["measures"] is not None]
    doc.h(2, "Where the time went")
    doc.table(["arm", "model", "its iteration (min)", "its measures (min)"],
              [["", "M0", "-", minutes(time["m0_measures"])]] + rows)
    doc.p(f"{time['total'] / 60:.1f} minutes of finished steps in all, over every session (timeline.jsonl; a step "
          "a session was killed in counts from the session that finished it). A step reused from another "
          "experiment takes seconds.")


def _interval(found: dict) -> str:
    if found.get("difference") is None:
        return "-"
    return f"{found['difference']:+.3f} [{found['ci_low']:+.3f}, {found['ci_high']:+.3f}]"


def _gallery(doc: Doc, results: dict) -> None:
    gallery = results["gallery"]
    if not gallery:
        return
    doc.h(2, "The same prompts, answered by M0 and by every arm's last model (greedy)")
    m0 = next((answers[0] for answers in gallery.values() if 0 in answers), [])
    last = {arm: answers[max(answers)] for arm, answers in gallery.items() if max(answers) > 0}
    for index, item in enumerate(m0):
        answers = [("M0", item["response"], f"{item['n_tokens']} tokens")]
        for arm, found in last.items():
            if index < len(found):
                k = max(gallery[arm])
                answers.append((f"{arm} M{k}", found[index]["response"], f"{found[index]['n_tokens']} tokens"))
        doc.gallery(item["prompt"], answers)
