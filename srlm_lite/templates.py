"""Prompt templates: plain files in `prompts/` with {named} placeholders that fail loudly when one is missing."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class TemplateError(KeyError):
    """A template was rendered with a placeholder missing or an unknown variable given."""


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @property
    def placeholders(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.text))

    def render(self, **variables: str) -> str:
        missing = self.placeholders - variables.keys()
        unknown = variables.keys() - self.placeholders
        if missing or unknown:
            raise TemplateError(
                f"template '{self.name}': missing {sorted(missing)}, unknown {sorted(unknown)}; "
                f"it takes {sorted(self.placeholders)}"
            )
        # Substitute in one pass so that braces inside the values are never read as placeholders.
        return _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), self.text)


def _prompts_dir():
    """`srlm_lite.prompts`: the installed package, or the checkout's prompts/ folder mapped to that name."""
    from ._checkout import map_checkout_packages

    map_checkout_packages()
    return resources.files("srlm_lite.prompts")


@lru_cache(maxsize=None)
def load_template(name: str) -> Template:
    """A template shipped in `prompts/` (e.g. "judge", "self_instruct")."""
    return Template(name, _prompts_dir().joinpath(f"{name}.txt").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def seed_prompts() -> tuple[dict, ...]:
    """The seed pool shipped with srlm-lite: records with `id`, `category`, `prompt`."""
    text = _prompts_dir().joinpath("seed_prompts.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())
