"""How the library reports while it works: a progress callback and an event callback, both optional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Progress = Callable[[str, int, int], None]


@dataclass
class Hooks:
    """`progress(stage, done, total)` and `event(message)`; the CLI draws bars and prints lines from them."""

    progress: Progress | None = None
    event: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        if self.event:
            self.event(message)
