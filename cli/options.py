"""Command-line options generated from the config dataclasses: name, type, help, choices and default in one place.

`config_options("instructions.num_prompts", ...)` adds one click option per setting: the flag is the field's
`flag` metadata (else its name with dashes), booleans get `--x/--no-x`, fields with `choices` a click.Choice of the
library's constant, and the help text is the field's own with the paper's default. `overrides(kwargs)` takes the
values given back out as {"section.key": value}: flag > TOML > default stays `config.load`'s rule."""

from __future__ import annotations

import click

from srlm_lite.config import setting

PREFIX = "setting__"
# the server engine's settings (`--backend openai`): offered by iterate and every eval command
SERVER_SETTINGS = ("model.base_url", "model.api_key_env", "model.concurrency", "model.serve_local", "model.server",
                   "model.served_model")
# how the reward sources combine their parts (`--reward verify` / `mix`) and rank loops last: offered by iterate and
# `eval reward`
REWARD_WEIGHTS = ("reward.tie_break", "reward.mix_judge", "reward.mix_implicit", "reward.mix_verify",
                  "reward.mix_length", "reward.max_repetition")


def option_for(dotted: str):
    """One click option for the config setting `dotted` ("judge.mode")."""
    field, default = setting(dotted)
    flag = "--" + (field.metadata.get("flag") or field.name.replace("_", "-"))
    name = PREFIX + dotted.replace(".", "__")
    help_text = f"{field.metadata.get('help', '')} [default: {default}]"
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    choices = field.metadata.get("choices")
    kind = click.Choice(list(choices)) if choices else type(default)
    return click.option(flag, name, type=kind, default=None, help=help_text)


def config_options(*dotted: str):
    """Decorator: the options of these settings, in the order given."""

    def decorate(command):
        for key in reversed(dotted):
            command = option_for(key)(command)
        return command

    return decorate


def overrides(kwargs: dict) -> dict:
    """Remove the generated options' values from a command's kwargs: {"section.key": value} (None = not given)."""
    found = {}
    for name in [k for k in kwargs if k.startswith(PREFIX)]:
        found[name[len(PREFIX):].replace("__", ".")] = kwargs.pop(name)
    return found


def choice(values) -> click.Choice:
    """A click.Choice of one of the library's constants (judge modes, losses, backends...)."""
    return click.Choice(list(values))
