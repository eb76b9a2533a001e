"""`run_experiment`: every arm's loop from the same M0, every model measured, the side-by-side report; resumable.

An experiment folder holds `experiment.json` (what was asked: arms, configs, measures, data; a rerun with other
settings is refused), `arms/<arm>/` (one ordinary run directory per arm), `measures/M0/` (the common starting model)
and `measures/<arm>/M<k>/`, `report/`, and `manifest.json`, written last. Arms advance together, one iteration at a
time (every arm's M1 is trained and measured before any arm's M2), so an experiment stopped early still compares
its arms at the same iterations; an arm that differs from an earlier one only in training starts from that arm's
iteration-1 data (`share.py`). Running the same command again continues where it stopped: finished iterations and
measures are skipped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, to_dict
from ..errors import InputError
from ..hooks import Hooks
from ..lock import LOCK_FILE, run_lock
from ..records import read_json, write_json_atomic
from ..runs import MANIFEST, model_for_iteration, model_spec, start_adapter
from .definitions import (PLAN_FILE, RESULTS_FILE, Experiment, Measures, arm_config, arm_dir, experiment,
                          measure_dir, shares_data)
from .measure import DataFiles, Target, measure_model
from .timeline import Timeline, iteration_step, m0_step, measure_step


@dataclass
class Plan:
    """One experiment as it will run: its arms' configs, its measures, its data and its folder."""

    experiment: Experiment
    quick: bool
    iterations: int
    out: Path
    data: DataFiles
    configs: dict[str, RunConfig]
    measures: Measures
    reuse: tuple[Path, ...] = ()  # other experiment folders whose finished work this one takes (reuse.py)

    def arm_dir(self, arm: str) -> Path:
        return arm_dir(self.out, arm)

    def measure_dir(self, arm: str, k: int) -> Path:
        return measure_dir(self.out, arm, k)


def plan_experiment(name: str, out: str | Path, *, quick: bool = False, iterations: int | None = None,
                    data: DataFiles, base: RunConfig | None = None, measures: Measures | None = None,
                    reuse: tuple[str | Path, ...] = ()) -> Plan:
    """The plan of experiment `name` (preset full or quick; `iterations` overrides the preset's; `base` and
    `measures`, for tests and scripts, replace the defaults under the preset's loop settings and its measures;
    `reuse`: experiment folders whose finished iterations and measures are taken instead of made again)."""
    exp = experiment(name)
    preset = exp.preset(quick)
    if iterations is not None and iterations < 1:
        raise ValueError("iterations must be >= 1")
    configs = {arm.name: arm_config(preset, arm, iterations, base) for arm in exp.arms}
    return Plan(exp, quick, iterations or preset.iterations, Path(out), data, configs, measures or preset.measures,
                tuple(Path(folder) for folder in reuse))


def describe(plan: Plan) -> dict:
    """What experiment.json records (and a resumed experiment must match)."""
    exp = plan.experiment
    return {
        "experiment": exp.name,
        "claim": exp.claim,
        "question": exp.question,
        "preset": "quick" if plan.quick else "full",
        "iterations": plan.iterations,
        "arms": {arm.name: {"label": arm.label, "overrides": arm.overrides, "config": to_dict(plan.configs[arm.name])}
                 for arm in exp.arms},
        "measures": dataclasses.asdict(plan.measures),
        "data": {key: str(value) for key, value in dataclasses.asdict(plan.data).items()},
    }


def check_plan(plan: Plan) -> None:
    """Write experiment.json, or check that an existing one asks for the same experiment (its settings: the words
    describing it may change, and settings added to the config since it was written count at their defaults)."""
    path = plan.out / PLAN_FILE
    wanted = describe(plan)
    if path.exists():
        found, now = _decisive(read_json(path)), _decisive(wanted)
        if found != now:
            changed = sorted(k for k in now if found.get(k) != now[k])
            raise InputError(f"{plan.out} holds another experiment or other settings ({', '.join(changed)} differ); "
                             f"continue it with the same command, or choose another --out")
        return
    if plan.out.exists() and any(p.name != LOCK_FILE for p in plan.out.iterdir()):
        raise FileExistsError(f"{plan.out} is not empty and holds no {PLAN_FILE}: choose another --out")
    write_json_atomic(path, wanted)


def _decisive(description: dict) -> dict:
    """What must match for an experiment to continue: name, preset, iterations, measures, data, and each arm's
    overrides and config (read back through the current config classes, as the loop's resume does)."""
    from ..config import ConfigError, from_plain

    def config(data: dict):
        try:
            return to_dict(from_plain(data))
        except ConfigError:
            return data  # a setting that no longer exists: it differs

    try:
        measures = dataclasses.asdict(Measures(**description["measures"]))
    except TypeError:
        measures = description["measures"]
    arms = {name: {"overrides": arm["overrides"], "config": config(arm["config"])}
            for name, arm in description["arms"].items()}
    return {"experiment": description["experiment"], "preset": description["preset"],
            "iterations": description["iterations"], "measures": measures, "data": description["data"], "arms": arms}


def run_experiment(plan: Plan, hooks: Hooks | None = None) -> dict:
    """Run (or continue) the experiment; returns its results (also in results.json) with the report's paths."""
    hooks = hooks or Hooks()
    with run_lock(plan.out, hooks.say):  # one writer per experiment folder (each arm's run is locked as well)
        return _run_locked(plan, hooks)


def _run_locked(plan: Plan, hooks: Hooks) -> dict:
    from ..loop import iterate

    started = time.perf_counter()
    reuser = _reuser(plan, hooks)  # a --reuse folder that is not another experiment: refused before anything
    check_plan(plan)
    timeline = Timeline(plan.out)
    first = plan.configs[plan.experiment.arms[0].name]
    m0 = model_spec(first, start_adapter(first), "M0")
    with timeline.step(m0_step()):
        reuser.measure("M0", to_dict(first), 0, None, plan.measure_dir("", 0))
        measure_model(Target(m0, m0, 0, first, plan.measure_dir("", 0), "M0"), plan.measures, plan.data, hooks)
    for k in range(1, plan.iterations + 1):
        for index, arm in enumerate(plan.experiment.arms):
            config, run, label = plan.configs[arm.name], plan.arm_dir(arm.name), f"{arm.name} M{k}"
            peer = _data_peer(plan, index)
            with timeline.step(iteration_step(arm.name, k)):
                if not reuser.iteration(arm.name, to_dict(config), run, k, peer if k == 1 else None) and k == 1:
                    _share_data(plan, index, peer, reuser, hooks)
                iterate(config, run, resume=True, hooks=arm_hooks(hooks, arm.name), until=k)
            with timeline.step(measure_step(arm.name, k)):
                reuser.measure(label, to_dict(config), k, run, plan.measure_dir(arm.name, k))
                target = Target(model_for_iteration(run, k), m0, k, config, plan.measure_dir(arm.name, k), label)
                measure_model(target, plan.measures, plan.data, hooks)
    return finish(plan, time.perf_counter() - started)


def _data_peer(plan: Plan, index: int) -> Path | None:
    """The run of the first earlier arm that differs from arm `index` only in training (its iteration-1 data is the
    one this arm trains on), or None."""
    config = plan.configs[plan.experiment.arms[index].name]
    earlier = plan.experiment.arms[:index]
    return next((plan.arm_dir(a.name) for a in earlier if shares_data(plan.configs[a.name], config)), None)


def _share_data(plan: Plan, index: int, peer: Path | None, reuser, hooks: Hooks) -> None:
    """Arm `index` starts from its peer's iteration-1 data (that arm's iteration 1 is done by now), else, for the
    first arm, from a reused experiment's arm that differs only in training; nothing when there is none or the data
    is linked already."""
    from .share import share_first_iteration

    arm = plan.experiment.arms[index]
    source = peer or reuser.first_data(arm.name, to_dict(plan.configs[arm.name]), plan.arm_dir(arm.name))
    if source:
        linked = share_first_iteration(source, plan.arm_dir(arm.name))
        if linked:
            hooks.say(f"{arm.name}: iteration 1 starts from {source}'s data ({', '.join(linked)})")


def _reuser(plan: Plan, hooks: Hooks):
    """The reused experiments (`plan.reuse`), checked: each must be another experiment folder."""
    from ..runs import base_model, model_sha256
    from .reuse import Reuser, Source

    sources = []
    for folder in plan.reuse:
        if not (folder / PLAN_FILE).is_file():
            raise InputError(f"--reuse {folder}: no experiment there (no {PLAN_FILE})")
        if folder.resolve() == plan.out.resolve():
            raise InputError(f"--reuse {folder} is this experiment's own folder")
        found = _decisive(read_json(folder / PLAN_FILE))
        sources.append(Source(folder, {arm: v["config"] for arm, v in found["arms"].items()}, found["measures"],
                              found["data"]))
    wanted = describe(plan)
    first = plan.configs[plan.experiment.arms[0].name]
    return Reuser(plan.out, sources, wanted["measures"], wanted["data"], lambda: model_sha256(base_model(first)),
                  hooks.say)


def report_so_far(out: str | Path) -> dict:
    """The report of an experiment folder as it stands (stopped, or still running elsewhere), running nothing; the
    results as `--json` gives them, with "unfinished" saying how far it got when it has not finished."""
    from .report import write_experiment_report
    from .results import load_results

    out = Path(out)
    if not (out / PLAN_FILE).exists():
        raise InputError(f"{out} holds no experiment (no {PLAN_FILE}): run `srlm-lite experiment NAME --out {out}`")
    results = load_results(out)
    if not (out / MANIFEST).exists():
        done = {arm: rows[-1]["iteration"] if rows else None for arm, rows in results["arms"].items()}
        results["unfinished"] = (f"the experiment has not finished: models measured so far, per arm, up to "
                                 + ", ".join(f"{arm} M{k}" if k is not None else f"{arm} none"
                                             for arm, k in done.items())
                                 + f" of M{results['iterations']}; the figures below are of those models only.")
    files = write_experiment_report(out, results)
    keep = ("experiment", "preset", "iterations", "time", "arms", "unfinished")
    return {"report": str(files["html"]), "markdown": str(files["markdown"]),
            "plots": [str(p) for p in files["plots"]], "out": str(out), **{k: results[k] for k in keep
                                                                              if k in results}}


def finish(plan: Plan, seconds: float) -> dict:
    """The results from disk, the report, and the manifest (written last)."""
    from .report import write_experiment_report
    from .results import load_results

    results = load_results(plan.out)
    files = write_experiment_report(plan.out, results)
    sessions = _sessions(plan.out, seconds)
    out = {"experiment": plan.experiment.name, "report": str(files["html"]), "markdown": str(files["markdown"]),
           "plots": [str(p) for p in files["plots"]], "out": str(plan.out), "preset": results["preset"],
           "iterations": plan.iterations, "seconds": round(seconds, 1),
           "seconds_all_sessions": round(sum(s["seconds"] for s in sessions), 1),
           "seconds_steps": results["time"]["total"], "time": results["time"], "arms": results["arms"]}
    write_json_atomic(plan.out / RESULTS_FILE, out)
    write_json_atomic(plan.out / MANIFEST, {"experiment": describe(plan), "sessions": sessions,
                                            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return out


def _sessions(out: Path, seconds: float) -> list[dict]:
    """Wall time of every invocation that reached the end (this one appended); a killed one is not counted."""
    previous = read_json(out / MANIFEST).get("sessions", []) if (out / MANIFEST).exists() else []
    return previous + [{"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 1)}]


def arm_hooks(hooks: Hooks, arm: str) -> Hooks:
    """The loop's progress and events, labelled with the arm."""
    progress = None
    if hooks.progress:
        def progress(stage: str, done: int, total: int) -> None:
            hooks.progress(f"{arm} {stage}", done, total)
    return Hooks(progress=progress, event=lambda message: hooks.say(f"[{arm}] {message}"))
