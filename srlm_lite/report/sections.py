"""The report's sections: each writes its paragraphs, tables and plots into the document."""

from __future__ import annotations

import json
from pathlib import Path

from ..judging import verdicts_per_answer
from ..records import group_by
from .load import Iteration, Run
from .metrics import eval_kind, eval_rows, eval_series, flatten, funnel, model_index, scores
from .plots import plot_dpo, plot_evals, plot_funnel, plot_gap, plot_judge, plot_lengths, plot_scores
from .render import Doc, fmt


def header(doc: Doc, run: Run, rows: list[dict]):
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
              f"{verdicts_per_answer(jud.get('mode'), jud.get('judge_samples', '-'))} (judge mode "
              f"`{jud.get('mode', '-')}`), "
              f"loss `{tr.get('loss', 'sigmoid')}`{' (length-normalized)' if tr.get('length_normalize') else ''}, "
              f"beta {tr.get('beta', '-')}, learning rate {tr.get('learning_rate', '-')}, "
              f"{tr.get('epochs', '-')} epoch(s), LoRA rank {tr.get('lora_rank', '-')}"
              + (f"; started from the adapter `{c['init']}`" if c.get("init") else "") + ".")
    versions = (run.manifest or {}).get("versions")
    if versions:
        doc.p("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".")


def _arrow(start: str, end: str) -> str:
    return "-" if start == end == "-" else f"{start} -> {end}"


def summary(doc: Doc, rows: list[dict]):
    doc.h(2, "Summary")
    doc.table(
        ["iteration", "status", "prompts kept", "responses", "parse rate", "scored", "pairs", "chosen", "rejected",
         "DPO loss", "reward acc.", "resp. chars", "minutes"],
        [[r["iteration"], r["status"], f"{r['prompts_kept']}/{r['prompts_generated']}", r["responses"],
          fmt(r["parse_rate"], "%"), fmt(r["score_rate"], "%"), r["pairs"], fmt(r["mean_score_chosen"], ".2"),
          fmt(r["mean_score_rejected"], ".2"), _arrow(fmt(r["dpo_loss_start"]), fmt(r["dpo_loss_end"])),
          _arrow(fmt(r["reward_accuracy_start"], ".2"), fmt(r["reward_accuracy_end"], ".2")),
          fmt(r["mean_response_chars"], ".0"), fmt(sum(r["seconds"].values()) / 60 if r["seconds"] else None, ".1")]
         for r in rows])
    done = [r for r in rows if r["status"] == "complete"]
    if done:
        trend = lambda key, kind="": " -> ".join(fmt(r[key], kind) for r in done)  # noqa: E731
        doc.p(f"Over the complete iterations ({', '.join(str(r['iteration']) for r in done)}): mean response length "
              f"{trend('mean_response_chars', '.0')} characters; mean judge score {trend('mean_score', '.2')}; "
              f"pairs {trend('pairs')}; the chosen answer is the longer one in {trend('chosen_longer', '%')} of "
              f"pairs. 'parse rate' counts verdicts in which the judge wrote 'Score: X' itself; 'scored' those "
              f"with a score at all.")


def body_sections(doc: Doc, its: list[Iteration], rows: list[dict], out: Path) -> list[Path]:
    """The per-iteration sections (funnel, scores, DPO, lengths, judge, time); the PNG plots they wrote."""
    judged = [it for it in its if scores(it)]
    plots = funnel_section(doc, its, out)
    plots += scores_section(doc, its, judged, out)
    plots += dpo_section(doc, its, rows, out)
    plots += lengths_section(doc, its, rows, out)
    plots += judge_section(doc, judged or its, rows, out)
    reward_section(doc, rows)
    time_section(doc, rows)
    return plots


def funnel_section(doc: Doc, its: list[Iteration], out: Path) -> list[Path]:
    doc.h(2, "Data funnel")
    plot = plot_funnel(its, out / "funnel.png")
    doc.image(plot, "data funnel per iteration",
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
    return [plot]


def scores_section(doc: Doc, its: list[Iteration], judged: list[Iteration], out: Path) -> list[Path]:
    plots = []
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
    return plots


def dpo_section(doc: Doc, its: list[Iteration], rows: list[dict], out: Path) -> list[Path]:
    doc.h(2, "DPO training")
    if not any(it.records["train"] for it in its):
        doc.p("No DPO step has been logged yet.")
        return []
    plot = plot_dpo(its, out / "dpo.png")
    doc.image(plot, "DPO curves",
              "Per step (batch) of each iteration's DPO: loss (starts at ln 2: the policy equals the reference "
              "M_(t-1)), reward accuracy (fraction of pairs with chosen reward > rejected reward) and reward "
              "margin. Thick lines are moving averages. A step's values are measured before its update, so "
              "in the first epoch they are on pairs the model has not trained on yet (a held-out view); the "
              "stars are the end values on all the training pairs after training (how well it fits them).")
    doc.table(["iteration", "steps", "loss at step 1", "loss on unseen batches", "held-out loss / acc.",
               "fit loss / acc. (trained pairs)", "margin end"],
              [[r["iteration"], r["train_steps"], fmt(r["dpo_loss_start"]), fmt(r["online_loss"]),
                f"{fmt(r['eval_loss'])} / {fmt(r['eval_accuracy'], '.2')} (n={r['pairs_held_out'] or 0})",
                f"{fmt(r['dpo_loss_end'])} / {fmt(r['reward_accuracy_end'], '.2')}", fmt(r["margin_end"], ".2")]
               for r in rows])
    doc.p("Read the honest columns: 'unseen batches' averages the first epoch's steps, each measured before the model "
          "trained on that batch; 'held-out' is pairs kept out of training (`[train] holdout`). The fit columns "
          "measure the very pairs the model trained on, so they always look good.")
    return [plot]


def reward_section(doc: Doc, rows: list[dict]) -> None:
    """The reward source and its signal check on each iteration's own candidates."""
    if not any(r.get("reward_signal") for r in rows):
        return
    doc.h(2, "The reward's signal")
    doc.table(["iteration", "source", "ties", "mean best-worst gap", "Spearman with length",
               "constraints met: best / random / worst of N", "loops ranked last"],
              [[r["iteration"], r.get("reward_source") or "judge", fmt(s.get("ties")), fmt(s.get("mean_gap")),
                fmt(s.get("length_spearman"), ".2"),
                "-" if s.get("best_of_n") is None else
                f"{fmt(s['best_of_n'], '%')} / {fmt(s['random_of_n'], '%')} / {fmt(s['worst_of_n'], '%')}",
                fmt(r.get("loops_ranked_last"))]
               for r in rows for s in [r.get("reward_signal") or {}]])
    doc.p("A reward that carries signal ranks candidates that meet more of their prompt's verifiable constraints "
          "higher (best > random > worst; only prompts with constraints count); a Spearman correlation with length "
          "near 1 means the reward is mostly length. Loops (candidates whose word 4-grams repeat more than "
          "[reward] max_repetition of the time) are ranked below the rest of their prompt, never chosen.")


def lengths_section(doc: Doc, its: list[Iteration], rows: list[dict], out: Path) -> list[Path]:
    doc.h(2, "Response length")
    plot = plot_lengths([it for it in its if it.records["responses"]] or its, out / "lengths.png")
    doc.image(plot, "response length per iteration",
              "Characters per candidate response written by M_(t-1) in iteration t (box: quartiles), with the "
              "mean length of chosen and rejected answers. The paper saw responses grow every iteration.")
    doc.table(["iteration", "mean chars", "mean tokens", "hit max_tokens", "chosen is longer", "r(score, length)"],
              [[r["iteration"], fmt(r["mean_response_chars"], ".0"), fmt(r["mean_response_tokens"], ".1"),
                fmt(r["truncated"], "%"), fmt(r["chosen_longer"], "%"), fmt(r["score_length_r"], ".2")]
               for r in rows])
    return [plot]


def judge_section(doc: Doc, its: list[Iteration], rows: list[dict], out: Path) -> list[Path]:
    doc.h(2, "The judge")
    plot = plot_judge(its, out / "judge.png")
    doc.image(plot, "judge agreement",
              "Parse rate: verdicts in which the judge wrote 'Score: X' itself. Self-agreement: how often two "
              "independent verdicts of the judge order two answers to the same prompt the same way (50% = chance). "
              "Length preference: how often the chosen answer is the longer one. A small model's judge is the "
              "method's weak point (README, 'The judge, honestly'): its accuracy on labelled pairs, when measured "
              "with `srlm-lite eval judge`, appears under Evaluations.")
    doc.table(["iteration", "judged by", "parse rate", "score rate", "self-agreement", "verdict spread (sd)",
               "chosen is longer", "r(score, length)"],
              [[r["iteration"], f"M{r['iteration'] - 1}", fmt(r["parse_rate"], "%"), fmt(r["score_rate"], "%"),
                fmt(r["judge_agreement"], "%"), fmt(r["verdict_spread"], ".2"), fmt(r["chosen_longer"], "%"),
                fmt(r["score_length_r"], ".2")] for r in rows])
    return [plot]


def time_section(doc: Doc, rows: list[dict]) -> None:
    timed = [r for r in rows if r["seconds"]]
    if not timed:
        return
    doc.h(2, "Time per stage")
    stages = list(dict.fromkeys(k for r in timed for k in r["seconds"]))
    doc.table(["iteration", *stages, "total (min)"],
              [[r["iteration"], *[fmt(r["seconds"].get(s), ".1") for s in stages],
                f"{sum(r['seconds'].values()) / 60:.1f}"] for r in timed])
    doc.p("Seconds per stage, from each iteration's manifest.")


def evals_section(doc: Doc, run: Run, out: Path) -> list[Path]:
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
    paired_section(doc, run.evals)
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
            doc.table(["field", *labels], [[f, *[_short(fmt(flat.get(f))) for _, flat in columns]] for f in fields])
            doc.p("From " + ", ".join(f"`{n}`" for n, _ in singles) + ".")
        for name, data in files:
            rows = eval_rows(data)
            if rows:
                headers = list(dict.fromkeys(k for r in rows for k in r))[:14]
                doc.p(f"`{name}`:")
                doc.table(headers, [[_short(fmt(r.get(h))) for h in headers] for r in rows])
                rest = {k: v for k, v in flatten(data).items() if not str(v).startswith("(list")}
                if rest:
                    doc.table(["field", "value"], [[k, _short(fmt(v))] for k, v in rest.items()])
            elif not isinstance(data, dict):
                doc.p(f"`{name}`: `{json.dumps(data)[:300]}`")
    return plots


def paired_section(doc: Doc, evals: list[tuple[str, object]]) -> None:
    """M_t against M0 on the same items: the paired difference, its 95% bootstrap interval, McNemar's p (IFEval:
    all prompts, the families `verify` trained on, those it never saw)."""
    rows = []
    for name, data in evals:
        paired = data.get("paired_vs_M0") if isinstance(data, dict) else None
        for part, r in (paired or {}).items():
            if isinstance(r, dict) and r.get("n"):
                model = model_index(flatten(data), name)
                rows.append([eval_kind(name), f"M{model}" if model is not None else name, part, str(r["n"]),
                             f"{fmt(r.get('a'))} vs {fmt(r.get('b'))}", fmt(r.get("difference")),
                             f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]", fmt(r.get("p_value"))])
    if rows:
        doc.h(3, "M_t against M0, paired")
        doc.table(["evaluation", "model", "items", "n", "M_t vs M0", "difference", "95% interval", "McNemar p"], rows)
        doc.p("The same prompts or pairs for both models; the interval is a paired bootstrap. IFEval's `seen` "
              "prompts use only the constraint families a `verify` reward may train on, `unseen` none of them.")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def gallery_section(doc: Doc, gallery: list[dict] | None):
    doc.h(2, "Gallery: the same prompts answered by M0..Mk")
    if not gallery:
        doc.p("No gallery in this report (rendered with `--no-gallery`, or no model was available).")
        return
    settings = gallery[0]
    doc.p(f"Prompts from the shipped seed pool, answered by every model of the run with the same settings "
          f"(temperature {settings.get('temperature')}, seed {settings.get('seed')}, at most "
          f"{settings.get('max_tokens')} tokens). M0 is the base model; M_k = base + the LoRA trained in iteration k.")
    for records in group_by(gallery).values():
        records.sort(key=lambda r: r["k"])
        doc.gallery(records[0]["prompt"], [(f"M{r['k']}", r["response"],
                                            f"{r['n_tokens']} tokens" + (", cut at max_tokens"
                                                                         if r["finish_reason"] == "length" else ""))
                                           for r in records])


def examples_section(doc: Doc, its: list[Iteration]):
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
