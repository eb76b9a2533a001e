"""Paired arms: iteration 1's generated and judged data made once and used by every arm that differs only in
training. The source arm's finished stage files of iteration 1 (every stage before `train`: instructions,
responses, judgments, rewards, pairs) are hard-linked (copied where links are impossible) into the other arm's run
directory before it runs; the loop's resume then finds those stages done and goes straight to training, on exactly
the same pairs."""

from __future__ import annotations

from pathlib import Path

from ..records import link_or_copy
from ..runs import iteration_dir
from ..stages import FILES, STAGES

SHARED_STAGES = tuple(stage for stage in STAGES if stage != "train")  # everything before training, in order


def share_first_iteration(source_run: Path, target_run: Path) -> list[str]:
    """Link the source run's finished iteration-1 data files into the target run (files it already has are left as
    they are); returns the names linked. A stage not finished in the source, or begun by the target itself, is not
    shared, nor any after it."""
    source, target = iteration_dir(source_run, 1), iteration_dir(target_run, 1)
    linked = []
    for stage in SHARED_STAGES:
        name = FILES[stage]
        if not (source / name).exists():
            break
        if (target / (name + ".partial")).exists():
            break  # the target arm began this stage itself: it finishes its own
        if (target / name).exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        link_or_copy(source / name, target / name)
        linked.append(name)
    return linked
