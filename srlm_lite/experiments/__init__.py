"""The method's claims as experiments a teacher can run: arms that start from the same M0 with the same seeds, every
model measured on fixed data never trained on, a side-by-side report (`srlm-lite experiment NAME`).

definitions (the experiments as a table of arms and presets) -> runner (the loop per arm, `share` for paired data,
`measure` per model: `drift`, IFEval, the judge, `judge_generate` + `recognition`) -> results -> report, plots.
"""

from __future__ import annotations

from .definitions import EXPERIMENTS, NAMES, PLAN_FILE, RESULTS_FILE, Arm, Experiment, Measures, Preset, experiment
from .measure import DataFiles, data_files
from .runner import Plan, plan_experiment, report_so_far, run_experiment

__all__ = ["EXPERIMENTS", "NAMES", "PLAN_FILE", "RESULTS_FILE", "Arm", "DataFiles", "Experiment", "Measures", "Plan",
           "Preset", "data_files", "experiment", "plan_experiment", "report_so_far", "run_experiment"]
