"""`srlm-lite eval judge|ifeval|h2h`: the judge against labelled preferences, IFEval, head-to-head of iterations."""

from __future__ import annotations

import dataclasses

import click
from rich.table import Table

from srlm_lite.evals.judge_eval import MODES as EVAL_JUDGE_MODES
from srlm_lite.evals.scheduled import H2H_MAX_TOKENS, IFEVAL_MAX_TOKENS
from srlm_lite.judging import JUDGE_MODES, POINTWISE_MODES, verdicts_per_answer
from srlm_lite.rewards import SOURCES as REWARD_SOURCE_NAMES

from .options import REWARD_WEIGHTS, SERVER_SETTINGS, choice, config_options, overrides
from .ui import err, out, print_json_last, progress_hooks


def _model_options(command):
    command = click.option("--adapter", type=click.Path(exists=True),
                           help="With or without --model: apply this LoRA (an `srlm-lite sft --out` directory or a "
                                "GGUF LoRA file).")(command)
    command = click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
                           help="A GGUF model file (default: the embedded SmolLM2-135M-Instruct).")(command)
    command = click.option("--iteration", type=int, help="With --run: evaluate M_K (0 = the base model M0).")(command)
    command = click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
                           help="Run directory made by `srlm-lite iterate` (its config.toml is used).")(command)
    return _engine_options(command)


def _engine_options(command):
    """The engine flags (--backend, and the server engine's --base-url, --serve-local, ...) over the run's config."""
    return config_options("model.backend", *SERVER_SETTINGS)(command)


def _with_settings(config, settings: dict):
    """`config` with the settings given on the command line, the engine's and others (None = not given: the run's
    own settings)."""
    from srlm_lite.config import ConfigError, from_dict

    given: dict[str, dict] = {}
    for key, value in overrides(settings).items():
        if value is not None:
            section, name = key.split(".", 1)
            given.setdefault(section, {})[name] = value
    try:
        return from_dict(given, config) if given else config
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _common_options(command):
    command = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object as the last line of stdout.")(command)
    command = click.option("--out", "items_out", type=click.Path(dir_okay=False),
                           help="Also write one JSON line per evaluated item to this file.")(command)
    command = click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample.")(command)
    command = click.option("--limit", type=click.IntRange(min=1), help="Only the first N lines of the file.")(command)
    return command


def _resolve(run_dir, iteration, model_path, adapter=None):
    from srlm_lite.runs import resolve_model, run_config

    if run_dir and (model_path or adapter):
        raise click.UsageError("give either --run DIR --iteration K or --model PATH / --adapter, not both")
    if run_dir and iteration is None:
        raise click.UsageError("--run needs --iteration K (0 = the base model M0)")
    if iteration is not None and not run_dir:
        raise click.UsageError("--iteration needs --run DIR")
    try:
        return resolve_model(run_dir, iteration, model_path, adapter), run_config(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _finish(summary: dict, items_out, as_json: bool, headline: str) -> None:
    items = summary.pop("items", [])
    if items_out:
        from srlm_lite.records import write_jsonl_atomic

        write_jsonl_atomic(items_out, items)
        err.print(f"[dim]per-item records: {items_out}[/dim]")
    if as_json:
        print_json_last(summary)
    else:
        out.print(headline, soft_wrap=True)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(block: dict, key: str = "accuracy") -> str:
    if block.get(key) is None:
        return "-"
    return f"{block[key]:.1%} [{block['ci_low']:.1%}, {block['ci_high']:.1%}] (n={block['n']})"


@click.group(name="eval")
def eval_group() -> None:
    """Evaluate models and the judge: `judge` (labelled preferences), `ifeval` (IFEval checks), `h2h` (M_I vs M_J)."""


@eval_group.command(name="judge")
@click.option("--pairs", "pairs_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL: instruction, response_a, response_b, preferred (a/b); or instruction, responses, ranks.")
@click.option("--mode", type=choice(EVAL_JUDGE_MODES), default="pointwise", show_default=True,
              help="pointwise: the run's rubric judge scores each answer alone; pairwise: P(A) vs P(B) after a "
                   "forced 'The better response is Response', in both orders (a tie when they disagree).")
@click.option("--judge-samples", type=click.IntRange(min=1),
              help="Pointwise: verdicts per answer, averaged. [default: the run's judge.judge_samples, else 3]")
@click.option("--judge-mode", type=choice(POINTWISE_MODES),
              help="Pointwise: how a verdict is scored (see `iterate --help`). [default: the run's judge.mode]")
@_model_options
@_common_options
def judge_command(pairs_file, mode, judge_samples, judge_mode, run_dir, iteration, model_path, adapter, limit, seed,
                  items_out, as_json, **settings):
    """Agreement of the judge with labelled preference pairs (accuracy with ties half, Wilson 95% intervals)."""
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.evals.judge_eval import evaluate_judge, load_judge_file
    from srlm_lite.judging import with_logprobs_fallback

    spec, config = _resolve(run_dir, iteration, model_path, adapter)
    config = _with_settings(config, settings)
    judge_config = config.judge
    if judge_samples is not None:
        judge_config = dataclasses.replace(judge_config, judge_samples=judge_samples)
    if judge_mode is not None:
        judge_config = dataclasses.replace(judge_config, mode=judge_mode)
    try:
        pairs, rankings = load_judge_file(pairs_file, limit)
        err.print(f"[bold]eval judge[/bold] ({mode}) of {spec.label} on {len(pairs)} pairs"
                  + (f" and {len(rankings)} rankings" if rankings else "")
                  + (f", {verdicts_per_answer(judge_config.mode, judge_config.judge_samples)}, "
                     f"judge mode {judge_config.mode}"
                     if mode == "pointwise" else ""))
        engine = open_engine(spec, EngineOptions.from_config(config.model))
        with progress_hooks() as hooks:
            # a server without log-probs: the sampled judge instead, said once (judging.with_logprobs_fallback)
            summary = with_logprobs_fallback(
                lambda c: evaluate_judge(engine, pairs, rankings, mode=mode, config=c, seed=seed,
                                         progress=hooks.progress), judge_config, hooks.say)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {"model": spec.label, "pairs_file": pairs_file,
               "judge_mode": judge_config.mode if mode == "pointwise" else "pairwise", **summary}
    table = Table(title=f"judge vs labels ({mode}, {spec.label})", show_header=False)
    table.add_row("accuracy (ties half)", _interval(summary))
    table.add_row("ties", str(summary["ties"]))
    table.add_row("parse rate", _pct(summary["parse_rate"]) + (" (judge wrote 'Score: X' itself)" if mode == "pointwise"
                                                               else " (P(A)+P(B) >= min mass)"))
    table.add_row("preferred is longer", _interval(summary["by_length"]["preferred_longer"]))
    table.add_row("preferred is shorter", _interval(summary["by_length"]["preferred_shorter"]))
    table.add_row("baseline: longer wins", _interval(summary["longer_wins"]))
    table.add_row("judge picks the longer", _pct(summary["judge_picks_longer"]))
    if mode == "pairwise":
        table.add_row("position consistency", _pct(summary["position_consistency"]))
        table.add_row("first position chosen", _pct(summary["first_position_rate"]))
        table.add_row("accuracy, P(A) averaged", _interval(summary["accuracy_debiased"]))
    ranked = summary.get("rankings")
    if ranked and "skipped" not in ranked:
        table.add_row("rankings: pairwise acc.", _pct(ranked["pairwise_accuracy"]))
        table.add_row("rankings: 5-best / exact", f"{_pct(ranked['five_best'])} / {_pct(ranked['exact_match'])}")
        table.add_row("rankings: Spearman / Kendall", f"{ranked['spearman']} / {ranked['kendall_tau']}")
    elif ranked:
        table.add_row("rankings", ranked["skipped"])
    table.add_row("seconds", str(summary["seconds"]))
    err.print(table)
    _finish(summary, items_out, as_json,
            f"judge accuracy {_interval(summary)}; longer-wins baseline {_interval(summary['longer_wins'])}")


@eval_group.command(name="ifeval")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="IFEval JSONL: key, prompt, instruction_id_list, kwargs.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=IFEVAL_MAX_TOKENS, show_default=True,
              help="Token limit of one answer.")
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy (IFEval's setting).")
@_model_options
@_common_options
def ifeval_command(prompts_file, max_tokens, temperature, run_dir, iteration, model_path, adapter, limit, seed,
                   items_out, as_json, **settings):
    """Answer IFEval prompts and check them with if-verifiable's checkers: prompt/instruction-level, strict/loose."""
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.evals.ifeval import evaluate_ifeval, load_ifeval, offline_checkers

    spec, config = _resolve(run_dir, iteration, model_path, adapter)
    config = _with_settings(config, settings)
    try:
        records = load_ifeval(prompts_file, limit)
        offline_checkers()
        err.print(f"[bold]eval ifeval[/bold] of {spec.label} on {len(records)} prompts "
                  f"(max {max_tokens} tokens, T={temperature})")
        engine = open_engine(spec, EngineOptions.from_config(config.model))
        with progress_hooks() as hooks:
            summary = evaluate_ifeval(engine, records, max_tokens=max_tokens, temperature=temperature,
                                      top_p=1.0 if temperature == 0 else 0.9, seed=seed, progress=hooks.progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {"model": spec.label, "prompts_file": prompts_file, **summary}
    table = Table(title=f"IFEval ({spec.label})")
    for name in ("n", "prompt strict", "prompt loose", "inst. strict", "inst. loose", "truncated", "looping",
                 "prompt loose, loops not counted"):
        table.add_column(name, justify="right")
    table.add_row(str(summary["n"]), _pct(summary["prompt_strict"]), _pct(summary["prompt_loose"]),
                  _pct(summary["inst_strict"]), _pct(summary["inst_loose"]), str(summary["truncated"]),
                  _pct(summary["degenerate"]), _pct(summary["prompt_loose_nondegenerate"]))
    err.print(table)
    _finish(summary, items_out, as_json,
            f"IFEval prompt strict {_pct(summary['prompt_strict'])}, loose {_pct(summary['prompt_loose'])}; "
            f"instruction strict {_pct(summary['inst_strict'])}, loose {_pct(summary['inst_loose'])} "
            f"(n={summary['n']}); answers looping {_pct(summary['degenerate'])} (seq-rep-4 > 0.5), prompt loose "
            f"counting no loop {_pct(summary['prompt_loose_nondegenerate'])}")


@eval_group.command(name="h2h")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run directory made by `srlm-lite iterate`.")
@click.option("--a", "iter_a", required=True, type=int, help="Iteration I: side A is M_I (0 = base).")
@click.option("--b", "iter_b", required=True, type=int, help="Iteration J: side B is M_J.")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSONL with `prompt`, `instruction` or MT-Bench `turns` (first turn).")
@click.option("--judge-model", type=click.Path(exists=True, dir_okay=False),
              help="GGUF of the judge. [default: the run's base model M0]")
@click.option("--judge-mode", type=choice(JUDGE_MODES),
              help="expected/forced/sampled: both answers scored with the rubric, the higher wins; pairwise: the "
                   "letter judge in both orders (on SmolLM2-135M it always says 'A': every pair ties). "
                   "[default: the run's judge mode]")
@click.option("--max-tokens", type=click.IntRange(min=1), default=H2H_MAX_TOKENS, show_default=True,
              help="Token limit of an answer.")
@click.option("--greedy", is_flag=True, help="Greedy answers instead of seeded sampling at T=0.7, top-p 0.9.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N prompts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the answers (the same for both sides).")
@click.option("--out", "items_out", type=click.Path(dir_okay=False), help="Also write one JSON line per prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@_engine_options
def h2h_command(run_dir, iter_a, iter_b, prompts_file, judge_model, judge_mode, max_tokens, greedy, limit, seed,
                items_out, as_json, **settings):
    """Head-to-head: M_I and M_J answer the same prompts; the judge (M0 by default) compares each pair."""
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.evals.h2h import head_to_head
    from srlm_lite.evals.prompts import read_prompts
    from srlm_lite.runs import resolve_model, run_config

    try:
        config = _with_settings(run_config(run_dir), settings)
        judge_config = dataclasses.replace(config.judge, mode=judge_mode or config.judge.mode)
        spec_a = resolve_model(run_dir, iter_a)
        spec_b = resolve_model(run_dir, iter_b)
        spec_j = resolve_model(model_path=judge_model) if judge_model else resolve_model(run_dir, 0)
        judge_label = (spec_j.label if judge_model
                       else f"the base model M0 of {run_dir} (default; --judge-model to change)")
        prompts = read_prompts(prompts_file, limit)
        err.print(f"[bold]eval h2h[/bold]: A = M{iter_a} vs B = M{iter_b} on {len(prompts)} prompts; "
                  f"answers {'greedy' if greedy else 'sampled at T=0.7, top-p 0.9'}, max {max_tokens} tokens; "
                  f"judge: {judge_label}, " + ("pairwise in both orders (a tie when they disagree)"
                                               if judge_config.mode == "pairwise" else
                                               f"rubric scores ({judge_config.mode}), the higher wins"))
        engines: dict = {}

        def engine_for(spec):
            if spec.key not in engines:
                engines[spec.key] = open_engine(spec, EngineOptions.from_config(config.model))
            return engines[spec.key]

        with progress_hooks() as hooks:
            summary = head_to_head(engine_for(spec_a), engine_for(spec_b), engine_for(spec_j), prompts,
                                   max_tokens=max_tokens, temperature=0.0 if greedy else 0.7,
                                   top_p=1.0 if greedy else 0.9, seed=seed, judge_config=judge_config,
                                   progress=hooks.progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {"a": f"M{iter_a}", "b": f"M{iter_b}", "judge": f"{judge_label} ({judge_config.mode})",
               "prompts_file": prompts_file,
               "sampling": "greedy" if greedy else "T=0.7, top-p 0.9", **summary}
    table = Table(title=f"M{iter_a} (A) vs M{iter_b} (B), judge: {spec_j.label if judge_model else 'M0'}")
    for name in ("n", "wins A", "ties", "losses A", "win rate A [95% CI]", "consistent", "chars A", "chars B",
                 "longer won"):
        table.add_column(name, justify="right")
    rate = "-" if summary["win_rate"] is None else \
        f"{summary['win_rate']:.1%} [{summary['ci_low']:.1%}, {summary['ci_high']:.1%}]"
    table.add_row(str(summary["n"]), str(summary["wins"]), str(summary["ties"]), str(summary["losses"]), rate,
                  _pct(summary["position_consistency"]), str(summary["mean_chars_a"]), str(summary["mean_chars_b"]),
                  _pct(summary["longer_answer_won"]))
    err.print(table)
    if judge_config.mode == "pairwise":
        err.print(f"[dim]judge: {judge_label}; averaged over both orders, P(A better) = {summary['mean_p_a']} "
                  f"({summary['debiased_wins']} pairs lean A, {summary['debiased_losses']} lean B)[/dim]")
    else:
        err.print(f"[dim]judge: {judge_label}; mean rubric score A {summary['mean_score_a']}, "
                  f"B {summary['mean_score_b']}[/dim]")
    _finish(summary, items_out, as_json,
            f"M{iter_a} vs M{iter_b}: {summary['wins']} wins, {summary['ties']} ties, {summary['losses']} losses; "
            f"win rate {rate}; mean chars {summary['mean_chars_a']} vs {summary['mean_chars_b']}")


@eval_group.command(name="reward")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Prompts JSONL; IFEval lines (prompt, instruction_id_list, kwargs) give best/random/worst-of-N "
                   "pass rates by IFEval's checks.")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="Labelled pairs JSONL (instruction, response_a, response_b, preferred): the reward's accuracy.")
@click.option("--reward", "source", type=choice(REWARD_SOURCE_NAMES), help="Reward source. [default: the run's]")
@click.option("--judge-mode", type=choice(POINTWISE_MODES), help="Judging format. [default: the run's]")
@click.option("--samples", type=click.IntRange(min=2), default=4, show_default=True, help="Candidates per prompt (N).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=IFEVAL_MAX_TOKENS, show_default=True,
              help="Token limit of a candidate.")
@click.option("--pairs-limit", type=click.IntRange(min=1), help="Only the first N labelled pairs.")
@config_options("reward.implicit_beta", "reward.length_penalty", *REWARD_WEIGHTS)
@_model_options
@_common_options
def reward_command(prompts_file, pairs_file, source, judge_mode, samples, max_tokens, pairs_limit, run_dir, iteration,
                   model_path, adapter, limit, seed, items_out, as_json, **settings):
    """Signal check: does the reward prefer better answers, and is it only length? Best/random/worst-of-N."""
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.evals.judge_eval import load_judge_file
    from srlm_lite.evals.prompts import read_jsonl_records
    from srlm_lite.evals.reward_check import RewardModel, check_reward
    from srlm_lite.runs import resolve_model

    spec, config = _resolve(run_dir, iteration, model_path, adapter)
    config = _with_settings(config, settings)
    config = dataclasses.replace(config,
                                 reward=dataclasses.replace(config.reward, source=source or config.reward.source),
                                 judge=dataclasses.replace(config.judge, mode=judge_mode or config.judge.mode))
    options = EngineOptions.from_config(config.model)
    records = [{**r, "prompt": r.get("prompt") or r.get("instruction")}
               for r in read_jsonl_records(prompts_file, limit)]
    pairs = load_judge_file(pairs_file, pairs_limit)[0] if pairs_file else None
    previous = open_engine(resolve_model(run_dir, iteration - 1), options) if run_dir and iteration else None
    model = RewardModel(open_engine(spec, options), config, previous)
    err.print(f"[bold]eval reward[/bold] ({config.reward.source}, judge {config.judge.mode}) of {spec.label}: "
              f"{len(records)} prompts x {samples} candidates" + (f", {len(pairs)} labelled pairs" if pairs else ""))
    with progress_hooks() as hooks:
        summary = check_reward(model, records, pairs, samples=samples, max_tokens=max_tokens, seed=seed,
                               progress=hooks.progress)
    summary = {"model": spec.label, "prompts_file": prompts_file, "pairs_file": pairs_file, **summary}
    table = Table(title=f"reward signal check ({config.reward.source})", show_header=False)
    for label, key in (("best-of-N passes", "best_of_n"), ("random-of-N passes", "random_of_n"),
                       ("worst-of-N passes", "worst_of_n"), ("pairs accuracy", "pairs_accuracy"),
                       ("  preferred shorter", "pairs_accuracy_preferred_shorter"), ("ties", "ties"),
                       ("mean best-worst gap", "mean_gap"), ("Spearman with length", "length_spearman")):
        value = summary.get(key)
        table.add_row(label, "-" if value is None else (_pct(value) if isinstance(value, float) and
                                                         "spearman" not in key and "gap" not in key else str(value)))
    err.print(table)
    _finish(summary, items_out, as_json,
            f"best/random/worst-of-{samples}: {_pct(summary.get('best_of_n'))} / {_pct(summary.get('random_of_n'))} / "
            f"{_pct(summary.get('worst_of_n'))}; pairs {_pct(summary.get('pairs_accuracy'))}; "
            f"length Spearman {summary.get('length_spearman')}")


@eval_group.command(name="paired")
@click.argument("items_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("items_b", type=click.Path(exists=True, dir_okay=False))
@click.option("--trained-families", help="IFEval: also split by these instruction families (comma-separated), e.g. "
              "the ones a verify reward trained on, and the rest. [default: none]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
def paired_command(items_a, items_b, trained_families, as_json):
    """Paired statistics of two models on the same items: the per-item files of `eval ifeval|judge --out` or of
    `iterate --eval` (iter_K/eval_ifeval_items.jsonl, evals/ifeval_M0_items.jsonl). Difference A - B, its 95%
    paired-bootstrap interval, McNemar's test. IFEval also counted without loops (`no_loop`: a pass by an answer
    whose word 4-grams repeat more than half the time is not counted)."""
    from srlm_lite.evals.paired import paired_ifeval_all, paired_judge
    from srlm_lite.records import read_jsonl

    a, b = read_jsonl(items_a), read_jsonl(items_b)
    if a and "loose" in a[0]:
        families = [f.strip() for f in trained_families.split(",")] if trained_families else None
        result = {"kind": "ifeval", **paired_ifeval_all(a, b, trained_families=families)}
    elif a and "credit" in a[0]:
        result = {"kind": "judge", "all": paired_judge(a, b)}
    else:
        raise click.UsageError(f"{items_a}: neither IFEval items (key, loose) nor judge items (index, credit)")
    table = Table(title=f"paired: A = {items_a} vs B = {items_b} ({result['kind']})")
    for name in ("items", "n", "A", "B", "A - B [95% CI]", "A only / B only", "McNemar p"):
        table.add_column(name, justify="right")
    for split, r in ((k, v) for k, v in result.items() if isinstance(v, dict)):
        table.add_row(split, str(r["n"]), _pct(r["a"]), _pct(r["b"]),
                      "-" if r["difference"] is None else
                      f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                      f"{r.get('a_only', '-')} / {r.get('b_only', '-')}", str(r.get("p_value", "-")))
    err.print(table)
    if as_json:
        print_json_last(result)
