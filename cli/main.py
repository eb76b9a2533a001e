"""The `srlm-lite` command group; each command lives in its own module."""

from __future__ import annotations

import click

from srlm_lite import __version__
from .bench import bench
from .chat import chat
from .doctor import doctor
from .eval import eval_group
from .export import export
from .experiment import experiment
from .iterate import iterate
from .report import report
from .sft import eft, sft
from .stages import STAGE_COMMANDS
from .ui import clear_error


class Commands(click.Group):
    """The command group: a user's mistake (or a full disk, a locked run) is shown as one line, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            shown = clear_error(exc)
            if shown is None:
                raise
            if shown is exc:
                raise
            raise shown from exc


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="srlm-lite")
def cli() -> None:
    """Self-Rewarding Language Models on a laptop: self-instruct, self-judge, DPO, iterate - offline."""


cli.add_command(iterate)
cli.add_command(doctor)
cli.add_command(eval_group)
cli.add_command(report)
cli.add_command(chat)
cli.add_command(bench)
cli.add_command(sft)
cli.add_command(eft)
cli.add_command(experiment)
cli.add_command(export)
for command in STAGE_COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli()
