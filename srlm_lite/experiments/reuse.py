"""Work another experiment already did, used instead of done again (`srlm-lite experiment NAME --reuse DIR`).

The three experiments overlap: `judge-vs-generate`'s arm and `anchor`'s beta-0.1 arm are the default loop, which is
also `sft-vs-dpo`'s dpo arm, and `anchor`'s sft arm is `sft-vs-dpo`'s. With the same M0, seed and settings a loop
iteration makes the same records, so a finished one is linked rather than run again:
- an **iteration** of an arm whose settings (all but the number of iterations) equal a source arm's, when the source
  finished it, the target has not begun it, and the target's previous model is the source's (same adapter bytes):
  the iteration folder's files are hard-linked (copied where links are impossible), its JSON files rewritten with
  the target's paths, and the folder appears at once (renamed into place), so a kill leaves nothing half-made;
- a **measure** of a model (IFEval, the judge, judge-vs-generate, drift, gallery) when the model is the same (same
  settings and adapter bytes; for M0, the same settings apart from training) and the measure's own settings and data
  file are the same (`measure.INPUTS`), when the source finished it and the target has not begun it.
Iteration 1's data for arms that differ only in training comes from a source experiment as it comes from an earlier
arm (`share.py`). What was reused, and from where, is recorded in the experiment folder (`reused.json`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..records import file_sha256, link_or_copy, read_json, write_json_atomic, write_text_atomic
from ..runs import ADAPTER_DIR, GGUF_ADAPTER, MANIFEST, MLX_ADAPTER, is_complete, iteration_dir
from ..stages import FILES
from .definitions import REUSED_FILE, arm_dir, measure_dir
from .measure import INPUTS


@dataclass(frozen=True)
class Source:
    """Another experiment folder: its arms' settings and measures as its experiment.json records them."""

    out: Path
    arms: dict[str, dict]  # arm -> its config as a dict (read back through the current config classes)
    measures: dict
    data: dict[str, str]

    def arm_dir(self, arm: str) -> Path:
        return arm_dir(self.out, arm)

    def measure_dir(self, arm: str, k: int) -> Path:
        return measure_dir(self.out, arm, k)


def settings(config: dict, k: int) -> dict:
    """What makes an arm's M_k and its measures: the arm's settings but its number of iterations; for M0 (the
    common starting model) not its training settings either."""
    return {key: value for key, value in config.items() if key != "iterations" and (k or key != "train")}


def same_model(run_a: Path, run_b: Path, k: int) -> bool:
    """M_k of two runs is the same model: M0 always (the settings say so), M_k when the adapters' bytes are equal."""
    if k == 0:
        return True
    found = False
    for name in (MLX_ADAPTER, GGUF_ADAPTER):
        a, b = (iteration_dir(run, k) / ADAPTER_DIR / name for run in (run_a, run_b))
        if a.exists() != b.exists():
            return False
        if a.exists():
            if not _same_file(a, b):
                return False
            found = True
    return found


def _same_file(a: Path, b: Path) -> bool:
    return os.path.samefile(a, b) or file_sha256(a) == file_sha256(b)


def base_model_sha(source: Source, arm: str) -> str | None:
    """sha256 of the model file the source arm's iterations sampled with (None before its first one finished)."""
    manifest = iteration_dir(source.arm_dir(arm), 1) / MANIFEST
    return read_json(manifest).get("model_sha256") if manifest.exists() else None


def find_iteration(sources: list[Source], config: dict, target_run: Path, k: int, model_sha: str) -> Path | None:
    """A source arm whose iteration k the target arm can take: same settings, same base model file, finished there,
    not begun here, and M_{k-1} the same in both; its run folder, or None."""
    if iteration_dir(target_run, k).exists() and any(iteration_dir(target_run, k).iterdir()):
        return None
    for source in sources:
        for arm, found in source.arms.items():
            run = source.arm_dir(arm)
            if (settings(found, k) == settings(config, k) and is_complete(iteration_dir(run, k))
                    and base_model_sha(source, arm) == model_sha and same_model(target_run, run, k - 1)):
                return run
    return None


def link_iteration(source_run: Path, target_run: Path, k: int) -> None:
    """The source's finished iteration k, as the target's: files linked, JSON files rewritten with the target's
    paths, the folder renamed into place in one step."""
    source, target = iteration_dir(source_run, k), iteration_dir(target_run, k)
    recorded = _recorded_run(source)
    staging = target.with_name(f".{target.name}.reuse")
    shutil.rmtree(staging, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        if path.is_dir() or path.name.startswith(".") or path.name.endswith(".partial"):
            continue
        dest = staging / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            found = _rebase(json.loads(path.read_text()), recorded, str(target_run))
            if path == source / MANIFEST:
                found["reused_from"] = str(source)  # made there, by the settings recorded in it
            write_text_atomic(dest, json.dumps(found, indent=2))
        else:
            link_or_copy(path, dest)
    if target.exists():
        target.rmdir()  # empty (find_iteration checked)
    os.replace(staging, target)


def _recorded_run(iteration: Path) -> str:
    """The run folder as the source's manifest names it (its adapter lives in <run>/iter_k/adapter)."""
    summary = read_json(iteration / MANIFEST)["summary"]
    adapter = Path(summary.get("adapter") or Path(summary["adapter_gguf"]).parent)
    return str(adapter.parent.parent)


def _rebase(value, old: str, new: str):
    """Every string that names a path under `old`, named under `new` instead (recursively)."""
    if isinstance(value, dict):
        return {key: _rebase(v, old, new) for key, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old):]
    return value


def find_measure(sources: list[Source], part: str, config: dict, k: int, measures: dict, data: dict,
                 target_run: Path | None, model_sha: str) -> Path | None:
    """A source's finished measure `part` of the same model (same settings, base model file and, past M0, adapter),
    with the same measure settings and data file; its folder, or None."""
    data_key, fields = INPUTS[part]
    for source in sources:
        if source.data.get(data_key) != data.get(data_key):
            continue
        if any(source.measures.get(name) != measures.get(name) for name in fields):
            continue
        for arm, found in source.arms.items():
            folder = source.measure_dir(arm, k)
            if (settings(found, k) == settings(config, k) and (folder / f"{part}.json").exists()
                    and base_model_sha(source, arm) == model_sha
                    and (k == 0 or same_model(target_run, source.arm_dir(arm), k))):
                return folder
    return None


def link_measure(source: Path, target: Path, part: str) -> bool:
    """The source's finished measure `part` linked into the target's measures folder (its companion files first,
    `{part}.json`, which marks it finished, last); False when the target has begun that measure itself."""
    if target.exists() and any(_of_part(p, part) for p in target.iterdir()):
        return False
    target.mkdir(parents=True, exist_ok=True)
    companions = sorted(p for p in source.iterdir() if _of_part(p, part) and p.name != f"{part}.json"
                        and not p.name.endswith(".partial") and not p.name.startswith("."))
    for path in companions + [source / f"{part}.json"]:
        link_or_copy(path, target / path.name)
    return True


def _of_part(path: Path, part: str) -> bool:
    name = path.name.lstrip(".")
    return name.startswith(f"{part}.") or name.startswith(f"{part}_")


def record(out: Path, kind: str, what: str, source: Path) -> None:
    """Add `what` (e.g. "dpo/iter_1", "M0/ifeval") reused from `source` to the experiment's reused.json."""
    path = out / REUSED_FILE
    found = read_json(path) if path.exists() else {"iterations": {}, "measures": {}}
    found[kind][what] = str(source)
    write_json_atomic(path, found)


class Reuser:
    """What the runner asks, arm by arm and model by model: take it from a source experiment when one has it."""

    def __init__(self, out: Path, sources: list[Source], measures: dict, data: dict, model_sha, say):
        self.out, self.sources, self.measures, self.data, self.say = out, sources, measures, data, say
        self._model_sha, self._sha = model_sha, None  # the base model file's sha256, computed when first needed

    def model_sha(self) -> str:
        if self._sha is None:
            self._sha = self._model_sha()
        return self._sha

    def iteration(self, arm: str, config: dict, run: Path, k: int, peer: Path | None = None) -> bool:
        """Link arm's iteration k from a source when one has it; `peer`: an earlier arm of this experiment whose
        iteration-1 data this arm must share (the source's must then be the same)."""
        found = self.sources and find_iteration(self.sources, config, run, k, self.model_sha())
        if not found or (peer is not None and not _same_data(peer, found)):
            return False
        link_iteration(found, run, k)
        record(self.out, "iterations", f"{arm}/iter_{k}", iteration_dir(found, k))
        self.say(f"{arm}: iteration {k} reused from {iteration_dir(found, k)}")
        return True

    def first_data(self, arm: str, config: dict, run: Path) -> Path | None:
        """A source arm whose iteration-1 data this arm can start from (differs only in training, same base model
        file); None when there is none or this arm has begun iteration 1 itself."""
        if not self.sources or iteration_dir(run, 1).exists():
            return None
        for source in self.sources:
            for name, found in source.arms.items():
                if settings(found, 0) == settings(config, 0) and base_model_sha(source, name) == self.model_sha():
                    return source.arm_dir(name)
        return None

    def measure(self, label: str, config: dict, k: int, run: Path | None, target: Path) -> None:
        """Link every measure of M_k (`label`) a source made of the same model with the same settings and data."""
        if not self.sources:
            return
        for part in INPUTS:
            found = find_measure(self.sources, part, config, k, self.measures, self.data, run, self.model_sha())
            if found and link_measure(found, target, part):
                record(self.out, "measures", f"{label}/{part}", found)
                self.say(f"{label}: {part} reused from {found}")


def _same_data(peer_run: Path, source_run: Path) -> bool:
    a, b = (iteration_dir(run, 1) / FILES["pairs"] for run in (peer_run, source_run))
    return a.exists() and b.exists() and _same_file(a, b)
