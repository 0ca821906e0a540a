"""The tuned comparison of ``medseg report`` (experiments with ``grid.tune: true``).

Each tuned method's candidate is chosen per dataset, model, repeat and fold on
validation DICE (:func:`medseg.experiments.tuning.select`, which sees no test metric);
the chosen runs' test rows, relabelled ``<method> (tuned=<params>)``, and every untuned
method's rows (the baseline ``none``) are analysed exactly like the main report
(:func:`.statistics.analyse`: mean ± std over repeats, paired Δ against ``none`` with its
95 % bootstrap CI, Wilcoxon tests). Files: ``tuning_choices.csv`` (one row per choice),
``tuned_summary.csv`` and ``tuned_comparisons.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ...errors import MedsegError
from ..tuning import Choice, budget, run_scores, select, tuned_parameters, tuned_rows
from .statistics import BASELINE, Analysis, analyse
from .tables import SUMMARY_COLUMNS, comparison_markdown, comparisons_csv, fmt, md_table, metric_name, \
    sentence, summary_markdown, table_csv

CHOICE_COLUMNS = ["dataset", "model", "method", "repeat", "fold", "chosen", "best_val_dice", "test_dice",
                  "n_candidates", "run_dir"]


def tuning_of(experiment: Mapping[str, Any] | None, path: Path | str = "experiment.yaml"
              ) -> dict[str, list[dict[str, Any]]]:
    """The experiment's candidates per method ({} when it was not tuned); a damaged
    ``grid.tune`` is one error naming the file."""
    tune = ((experiment or {}).get("grid") or {}).get("tune") or {}
    if not isinstance(tune, Mapping) or any(
            not isinstance(c, list) or not c or not all(isinstance(x, Mapping) for x in c) for c in tune.values()):
        raise MedsegError(f"{path}: grid.tune is not a list of candidates per method (damaged?)")
    return {str(k): [dict(x) for x in v] for k, v in tune.items()}


def tuned_analysis(a: Analysis, tune: Mapping[str, list[Mapping[str, Any]]]) -> tuple[Analysis, list[Choice]]:
    """The choices (on validation DICE: the runs' ``best_val_dice`` of ``a.runs``) and the
    analysis of the chosen runs' headline rows."""
    choices = select(run_scores(a.runs), tune)
    best = {r["run_dir"]: r["best_val_dice"] for r in a.runs}
    return analyse(tuned_rows(a.rows, tune, choices), a.failed_below, best.get), choices


def _test_dice(a: Analysis, run_dir: str) -> float:
    return next((r["dice"] for r in a.runs if r["run_dir"] == run_dir), float("nan"))


def choice_records(a: Analysis, choices: list[Choice]) -> list[dict[str, Any]]:
    return [{"dataset": c.dataset, "model": c.model, "method": c.method, "repeat": c.repeat, "fold": c.fold,
             "chosen": c.chosen, "best_val_dice": c.best_val_dice, "test_dice": _test_dice(a, c.run_dir),
             "n_candidates": c.n_candidates, "run_dir": c.run_dir} for c in choices]


def write_files(out: Path, a: Analysis, choices: list[Choice]) -> None:
    (out / "tuning_choices.csv").write_text(table_csv(CHOICE_COLUMNS, choice_records(a, choices)))
    (out / "tuned_summary.csv").write_text(table_csv(SUMMARY_COLUMNS, a.cells))
    (out / "tuned_comparisons.csv").write_text(comparisons_csv(a.comparisons))


def _candidates_text(tune: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    lines = []
    for name, cands in tune.items():
        params = tuned_parameters(cands)
        values = ", ".join("(" + ", ".join(f"{p}={json.dumps(c[p])}" for p in params) + ")" for c in cands)
        lines.append(f"- `{name}`: {values}")
    return lines


def section(a: Analysis, choices: list[Choice], tune: Mapping[str, list[Mapping[str, Any]]],
            dataset: str) -> list[str]:
    """``report.md``'s *Tuned comparison* of one dataset."""
    mine = [c for c in choices if c.dataset == dataset]
    if not mine:
        return []
    n = budget(tune)
    lines = [f"## Tuned comparison, equal budget ({dataset})", "",
             f"Budget: every method except `{BASELINE}` had **{n} candidate(s)**; `{BASELINE}` has nothing to tune "
             "and ran once per repeat and fold. Candidates:", "", *_candidates_text(tune), "",
             "Per model, repeat and fold (and training-set size or other swept value) the candidate with the "
             "highest **validation** DICE (the run's best validation DICE, the score that also chose its "
             "checkpoint; ties to the earlier candidate) was chosen; the test scans took no part in the "
             "choice. The tables below are the chosen runs' test results — of the headline (with several "
             "labels, the mean over labels) — and every candidate's own run is in the tables above and in "
             "`results.csv`.", "",
             "### Chosen candidates", ""]
    folds = len({c.fold for c in mine}) > 1
    header = ["model", "method", "repeat", *(["fold"] if folds else []), "chosen", "val DICE", "test DICE",
              "candidates run"]
    rows = [[c.model, c.method, str(c.repeat), *([str(c.fold)] if folds else []), f"`{c.chosen}`",
             fmt(c.best_val_dice), fmt(_test_dice(a, c.run_dir)), str(c.n_candidates)] for c in mine]
    lines += [md_table(header, rows), ""]
    if any(c.n_candidates < n for c in mine):
        lines += [f"Some choices had fewer than {n} finished candidates (the experiment is not complete).", ""]
    for metric in ("dice", "iou"):
        name = metric_name(metric, dataset)
        lines += [f"### {name}, tuned (mean ± std over repeats)", "", summary_markdown(a.cells, dataset, metric), ""]
    comps = [c for c in a.comparisons if c.dataset == dataset and c.against == BASELINE]
    for metric in ("dice", "iou"):  # every metric's comparison in tuned_comparisons.csv
        lines += [f"{metric_name(metric, dataset)}, tuned vs `{BASELINE}`:", "", comparison_markdown(comps, metric), ""]
    return lines + [f"- {sentence(c)}" for c in comps if c.metric == "dice"] + [""]
