"""``rvpo experiment``: methods x seeds of ``rvpo train`` runs, statistics over seeds, figures, a report.

    from rvpo.experiment import load_spec, run_experiment, finish
    spec = load_spec("configs/experiments/constraints_cpu.yaml")
    result = run_experiment(spec)          # trains what is missing; skips finished runs, resumes others
    report_path, summary = finish(spec)    # curves.csv, runs.csv, results.json, plots/, report.md

See docs/experiment.md. Modules: :mod:`~rvpo.experiment.spec` (the YAML), :mod:`~rvpo.experiment.runner`
(the runs), :mod:`~rvpo.experiment.aggregate` (tables and statistics), :mod:`~rvpo.experiment.plots`,
:mod:`~rvpo.experiment.report`.
"""

from rvpo.experiment.report import finish
from rvpo.experiment.runner import ExperimentResult, run_experiment
from rvpo.experiment.spec import ExperimentError, ExperimentSpec, Method, load_spec, parse_seeds, parse_spec

__all__ = ["ExperimentError", "ExperimentResult", "ExperimentSpec", "Method", "finish", "load_spec", "parse_seeds",
           "parse_spec", "run_experiment"]
