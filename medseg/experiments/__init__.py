"""Experiment grids and reports: the paper's regularizer comparison (Table 1, Fig. 1),
the k ablation (Fig. 3), the co-adaptation test (Fig. 4) and the qualitative figure
(Fig. 2) of Shi et al., *Heuristic Dropout*, ICASSP 2022.

* :mod:`.grid`     — experiment configs → runs (schema in its docstring);
* :mod:`.runner`   — runs a grid with a pluggable backend (local by default), resumable;
* :mod:`.results`  — ``results.csv``, written atomically, each run exactly once;
* :mod:`.estimate` — the ``--dry-run`` time estimate;
* :mod:`.report`   — tables, Wilcoxon tests and ``report.md`` from ``results.csv``;
* :mod:`.figures`  — box plots, k ablation, co-adaptation and qualitative figures;
* :mod:`.coadapt`  — the co-adaptation test.
"""

from .grid import RunSpec, expand, method_label, read_experiment
from .runner import BACKENDS, Backend, GridOutcome, LocalBackend, RunJob, run_experiment

__all__ = ["RunSpec", "expand", "method_label", "read_experiment", "BACKENDS", "Backend",
           "GridOutcome", "LocalBackend", "RunJob", "run_experiment"]
