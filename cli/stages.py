"""One command per stage (`instructions`, `responses`, `judge`, `reward`, `pairs`, `train`) on an existing run
directory."""

from __future__ import annotations

import click

from .options import config_options, overrides
from .ui import err, print_json_last, progress_hooks

# `train` alone may change its objective for this run of the stage (the run's config.toml is kept)
TRAIN_SETTINGS = ("train.loss", "train.length_normalize")


def _stage_command(stage: str, help_text: str) -> click.Command:
    @click.command(name=stage, help=help_text)
    @click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
                  help="Run directory made by `srlm-lite iterate` (its config.toml is used).")
    @click.option("--iteration", type=int, default=1, show_default=True, help="Iteration t (M_t samples and judges).")
    @click.option("--json", "as_json", is_flag=True, help="Print the stage's stats as one JSON line.")
    def command(run_dir, iteration, as_json, **settings):
        from srlm_lite.lock import run_lock
        from srlm_lite.loop import run_stage, stage_context

        given = overrides(settings)
        try:
            with progress_hooks() as hooks, run_lock(run_dir, hooks.say):  # one writer per run directory
                stats = run_stage(stage_context(run_dir, iteration, hooks, given), stage)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from exc
        err.print(stats)
        if as_json:
            print_json_last(stats)

    return config_options(*TRAIN_SETTINGS)(command) if stage == "train" else command


STAGE_COMMANDS = [
    _stage_command("instructions", "Stage 1: M_t writes new prompts few-shot from the seed pool (dedup + filters)."),
    _stage_command("responses", "Stage 2: N candidate responses per kept prompt."),
    _stage_command("judge", "Stage 3: J rubric judgments per response, averaged."),
    _stage_command("reward", "Stage 3b: each candidate's reward under the run's reward source (judge, implicit, "
                   "verify, mix) -> rewards.jsonl."),
    _stage_command("pairs", "Stage 4: best vs worst candidate per prompt (ties dropped) -> pairs.jsonl."),
    _stage_command("train", "Stage 5: DPO with a LoRA in MLX (reference = M_t), saved and exported for llama.cpp."),
]
