"""The experiments as tables: each is a set of arms (config overrides from the same M0, the same seeds), two
presets (full, quick) and the measures taken of every model M_0..M_K of every arm."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig, load
from ..errors import InputError

# The data every model is measured on, under a data folder ($SRLM_DATA, else ../shared/data): never shipped
DATA_FILES = {"ifeval": "ifeval/dev.jsonl", "pairs": "alpaca_eval_prefs/dev.jsonl", "drift": "mt_bench/question.jsonl"}
PLAN_FILE = "experiment.json"  # what was asked: arms, configs, measures, data (written first)
RESULTS_FILE = "results.json"  # the figures `--json` prints (written with the report)
REUSED_FILE = "reused.json"  # what was taken from other experiments (--reuse), and from where


def arm_dir(out: Path, arm: str) -> Path:
    """An experiment folder's run directory of one arm."""
    return Path(out) / "arms" / arm


def measure_dir(out: Path, arm: str, k: int) -> Path:
    """An experiment folder's measures of M_k of one arm (M0, the common starting model, once for every arm)."""
    return Path(out) / "measures" / ("M0" if k == 0 else f"{arm}/M{k}")


@dataclass(frozen=True)
class Measures:
    """What is measured of every model, and on how much data (fixed prompts, never trained on)."""

    drift_prompts: int = 40  # MT-Bench first turns, spread over its 8 categories
    drift_samples: int = 2  # answers sampled per prompt at temperature 1 (the model's own distribution)
    drift_max_tokens: int = 128  # the loop's answer length
    ifeval_prompts: int = 60  # the first N IFEval prompts, answered greedily
    ifeval_max_tokens: int = 256
    judge_pairs: int = 100  # the first N labelled pairs, judged by the model's own judge
    gallery_prompts: int = 3  # drift prompts answered greedily, shown side by side
    gallery_max_tokens: int = 192
    jvg_prompts: int = 0  # judge-vs-generate: the first N IFEval prompts (0 = not measured)
    jvg_samples: int = 4  # candidates per prompt (the paper's N)
    jvg_max_tokens: int = 256


@dataclass(frozen=True)
class Preset:
    iterations: int
    loop: dict = field(default_factory=dict)  # config overrides common to every arm ({"instructions.num_prompts": 8})
    measures: Measures = field(default_factory=Measures)


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict  # config overrides of this arm ({"train.objective": "sft"})
    label: str  # what it is, in one line of the report


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # the method's claim it tests, as the class would hear it
    question: str  # what to look at
    arms: tuple[Arm, ...]
    full: Preset
    quick: Preset

    def preset(self, quick: bool) -> Preset:
        return self.quick if quick else self.full


QUICK = Measures(drift_prompts=8, drift_samples=1, drift_max_tokens=96, ifeval_prompts=8, ifeval_max_tokens=128,
                 judge_pairs=12, gallery_prompts=2, gallery_max_tokens=96)
QUICK_LOOP = {"instructions.num_prompts": 8, "responses.max_tokens": 96}
DPO = Arm("dpo", {}, "DPO on the pairs (the default loop: sigmoid loss, beta 0.1, reference M_t)")
SFT = Arm("sft", {"train.objective": "sft"}, "SFT on each pair's chosen answer only (same pairs, batches, steps, "
                                             "learning rate); no reference, no rejected answer")

EXPERIMENTS: dict[str, Experiment] = {
    "sft-vs-dpo": Experiment(
        "sft-vs-dpo",
        "Plain fine-tuning on the model's own best answers does not improve it; DPO does: it moves toward the better "
        "answer and away from the worse.",
        "Do the DPO arm's models beat the SFT arm's on IFEval and on judging, and does DPO push the rejected answer "
        "down while SFT lifts both?",
        (DPO, SFT),
        full=Preset(iterations=3),
        quick=Preset(iterations=2, loop=QUICK_LOOP, measures=QUICK),
    ),
    "anchor": Experiment(
        "anchor",
        "DPO's anchor to the reference model keeps the loop from running away: without it, training on one's own "
        "outputs feeds back on itself (answers drift, collapse, repeat).",
        "Does KL(M_k || M0) grow faster, and do diversity and length drift more, as beta falls and without any "
        "anchor (SFT)?",
        (Arm("beta-0.01", {"train.beta": 0.01}, "DPO, beta 0.01 (a loose anchor)"),
         Arm("beta-0.1", {"train.beta": 0.1}, "DPO, beta 0.1 (the paper's)"),
         Arm("beta-1", {"train.beta": 1.0}, "DPO, beta 1.0 (a tight anchor)"),
         Arm("sft", SFT.overrides, "SFT on the chosen answers: no anchor at all")),
        # 21 models to measure, with sft-vs-dpo's measures: its dpo and sft arms' models are this one's (--reuse)
        full=Preset(iterations=5),
        quick=Preset(iterations=2, loop={"instructions.num_prompts": 4, "responses.max_tokens": 64},
                     measures=dataclasses.replace(QUICK, drift_prompts=4, drift_max_tokens=64, ifeval_prompts=4,
                                                  ifeval_max_tokens=96, judge_pairs=6, gallery_prompts=1,
                                                  gallery_max_tokens=64)),
    ),
    "judge-vs-generate": Experiment(
        "judge-vs-generate",
        "Recognising quality is easier than producing it: the model's own judge prefers better answers more reliably "
        "than the model writes them, which is why a model can teach itself at all.",
        "On IFEval prompts (pass/fail checked by code): what share of the model's own candidates pass, how often "
        "does its judge rank a passing candidate above a failing one, and does the judge's pick of N beat a random "
        "pick?",
        (DPO,),
        full=Preset(iterations=2, measures=Measures(jvg_prompts=271)),
        quick=Preset(iterations=1, loop=QUICK_LOOP,
                     measures=dataclasses.replace(QUICK, jvg_prompts=24, jvg_max_tokens=160)),
    ),
}
NAMES = tuple(EXPERIMENTS)


def experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; choose from {', '.join(NAMES)}")
    return EXPERIMENTS[name]


def arm_config(preset: Preset, arm: Arm, iterations: int | None = None, base: RunConfig | None = None) -> RunConfig:
    """The run config of one arm: `base` (default: the paper's defaults) < the preset's loop < the arm's overrides;
    `iterations` (default: the preset's)."""
    overrides = {**preset.loop, **arm.overrides, "iterations": iterations or preset.iterations}
    return load(None, {**(_flat(base) if base else {}), **overrides})


def shares_data(a: RunConfig, b: RunConfig) -> bool:
    """Two arms whose configs differ only in training sample, judge and pair exactly alike in iteration 1 (same
    M0, same seeds), so one arm's iteration-1 data serves both: the comparison is paired."""
    return dataclasses.replace(a, train=b.train, iterations=b.iterations) == b


def _flat(config: RunConfig) -> dict:
    from ..config import walk

    return {key: value for key, _, value in walk(config)}
