"""From a source checkout that is not installed, `cli/` and `prompts/` are mapped to `srlm_lite.cli` and
`srlm_lite.prompts`, as the wheel and the editable install map them (see pyproject.toml's package-dir)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"srlm_lite.cli": ROOT / "cli", "srlm_lite.prompts": ROOT / "prompts"}


def map_checkout_packages() -> None:
    """Register `srlm_lite.cli` / `srlm_lite.prompts` from the checkout's folders when no install provides them."""
    for name, folder in MAPPED.items():
        if name in sys.modules or not (folder / "__init__.py").is_file():
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                continue
        except ModuleNotFoundError:
            pass
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
