"""``results.csv``: one row per test case of every finished run of a grid.

Columns (:data:`COLUMNS`): ``dataset, model, regularizer, params, repeat, fold, seed,
case_id, dice, iou, run_dir`` — ``fold`` the cross-validation fold (0 without
cross-validation; a file written before the column existed reads as fold 0), ``params`` is the method's parameter set as
sorted-key JSON (``{}`` for defaults, e.g. ``{"k": 3}``), ``run_dir`` the run
folder relative to the experiment folder, ``dice``/``iou``/``hd95`` (mm)/``nsd`` the
run's per-case test scores exactly as in its ``cases.csv`` (``nan`` for a case left
out by an empty-case convention such as ``eval.empty_score: null``),
``best_val_dice`` the run's best validation DICE (the model-selection score, from
its ``logs/metrics.csv``; repeated on each of its rows). A file written before
``hd95``/``nsd``/``best_val_dice`` existed reads them as ``nan``.

Several labels (an nnU-Net dataset with more than one foreground label): the column
``label`` follows ``case_id``. Each test case has its *headline* row, ``label`` empty,
with the mean over the labels (the run's ``cases.csv`` headline columns), followed by
one row per label (``label`` = the label's name from ``dataset.json``) with that
label's dice/iou/hd95/nsd (``cases.csv``'s ``<metric>_<label>`` columns). The column is
written only when some row has a label: a binary experiment's file (one foreground,
every row a headline row) is exactly the file without the column, and a file without
it reads as ``label`` "" on every row. Whoever aggregates per run or per case takes
the headline rows (:func:`headline`); the report adds per-label sections from the
others (:func:`labels_of`).

How a run's rows get in, safely (:func:`append_run`):

1. take an exclusive ``fcntl`` lock on ``.results.csv.medseg.lock`` (so several workers —
   processes or cluster tasks on a shared file system — serialise their writes);
2. read the whole file, drop any rows of the same ``run_dir`` (so a run appears
   exactly once, even if it was redone), add the new rows;
3. write everything to a temporary file in the same folder, ``fsync``, and
   ``os.replace`` it onto ``results.csv`` (atomic on POSIX).

A process killed at any moment therefore leaves the old file or the new one,
never a half-written row. A run is *done* exactly when its rows are in
``results.csv`` (:func:`finished_runs`); the runner redoes any other run from scratch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import DataError
from ..io import atomic_write_text, csv_text, file_lock, lock_path

COLUMNS = ["dataset", "model", "regularizer", "params", "repeat", "fold", "seed", "case_id", "dice", "iou",
           "hd95", "nsd", "best_val_dice", "run_dir"]
#: the column of the label a row scores ("" = the headline: the mean over labels, or the
#: single foreground of a binary dataset); only in files that have labelled rows
LABEL = "label"
#: the columns of a file with labelled rows: :data:`COLUMNS` with ``label`` after ``case_id``
LABELLED_COLUMNS = [*COLUMNS[:COLUMNS.index("case_id") + 1], LABEL, *COLUMNS[COLUMNS.index("case_id") + 1:]]
#: columns a results file may lack (written before they existed) → the value they then mean
OPTIONAL = {"fold": "0", "hd95": "nan", "nsd": "nan", "best_val_dice": "nan", LABEL: ""}
#: the float columns
SCORES = ("dice", "iou", "hd95", "nsd", "best_val_dice")
FILENAME = "results.csv"


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``.<name>.medseg.lock`` next to ``path`` (waiting for
    another writer; a no-op where fcntl is missing). A user's file of that name is refused,
    never written, truncated or removed (:func:`medseg.io.file_lock`)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - non-POSIX: single writer assumed
        yield
        return
    with file_lock(lock_path(path)):
        yield


def _num(text: str) -> float:
    return float("nan") if text in ("", "nan", "NaN") else float(text)


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows (typed: repeat/fold/seed int, the scores float, ``label`` text — "" for a headline
    row and on every row of a file without the column); [] if the file does not exist."""
    p = Path(path)
    if not p.is_file():
        return []
    text = p.read_text()
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or [c for c in LABELLED_COLUMNS if c not in OPTIONAL or c in reader.fieldnames] != \
            reader.fieldnames:
        raise DataError(f"{p}: not a medseg results file (header {reader.fieldnames}, "
                        f"expected {','.join(COLUMNS)})")
    rows = []
    for i, r in enumerate(reader, start=2):
        r = {**OPTIONAL, **r}
        try:
            rows.append({**r, "repeat": int(r["repeat"]), "fold": int(r["fold"]), "seed": int(r["seed"]),
                         **{c: _num(r[c]) for c in SCORES}})
        except (TypeError, ValueError):
            raise DataError(f"{p}: line {i} is not a valid results row") from None
    return rows


def finished_runs(path: str | os.PathLike) -> set[str]:
    """``run_dir`` of every run with rows in the file: the runs that are done."""
    return {r["run_dir"] for r in read_results(path)}



def headline(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The headline rows (``label`` ""): one per case and run, the mean over labels."""
    return [r for r in rows if not r.get(LABEL)]


def labels_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The labels of the labelled rows, in order of first appearance ([] for a binary file)."""
    return list(dict.fromkeys(r[LABEL] for r in rows if r.get(LABEL)))


def _text(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text; the ``label`` column only when some row has a label (binary files unchanged)."""
    rows = list(rows)
    if not labels_of(rows):
        return csv_text(COLUMNS, rows)
    return csv_text(LABELLED_COLUMNS, ({**r, LABEL: r.get(LABEL) or ""} for r in rows))


def append_run(path: str | os.PathLike, rows: list[Mapping[str, Any]]) -> None:
    """Add the rows of one finished run (all with the same ``run_dir``), atomically."""
    if not rows:
        raise ValueError("a finished run has at least one test case")
    run_dirs = {r["run_dir"] for r in rows}
    if len(run_dirs) != 1:
        raise ValueError(f"rows of several runs given at once: {sorted(run_dirs)}")
    for r in rows:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise ValueError(f"results row lacks {missing}")
    with locked(path):
        kept = [r for r in read_results(path) if r["run_dir"] not in run_dirs]
        atomic_write_text(path, _text([*kept, *rows]))


def prune(path: str | os.PathLike, keep: Callable[[Mapping[str, Any]], bool]) -> int:
    """Remove the rows for which ``keep(row)`` is false (atomically); return how many."""
    with locked(path):
        rows = read_results(path)
        kept = [r for r in rows if keep(r)]
        if len(kept) != len(rows):
            atomic_write_text(path, _text(kept))
        return len(rows) - len(kept)


CASE_METRICS = ("dice", "iou", "hd95", "nsd")


def case_labels(columns: Iterable[str]) -> list[str]:
    """The labels of a ``cases.csv`` header: ``<label>`` of every ``dice_<label>`` column, in order."""
    return [c[len("dice_"):] for c in columns if c.startswith("dice_") and len(c) > len("dice_")]


def read_cases_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A run's ``cases.csv`` (written by :func:`medseg.training.run.evaluate_run`): per case
    ``case_id`` and the headline scores; with several labels also ``labels``: label name →
    its scores (from the ``<metric>_<label>`` columns; a missing one reads as NaN)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: the run has no test results (cases.csv missing)")
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        names = case_labels(reader.fieldnames or [])
        out = []
        for r in reader:
            case = {"case_id": r["case_id"], **{c: _num(r.get(c, "nan")) for c in CASE_METRICS}}
            if names:
                case["labels"] = {n: {c: _num(r.get(f"{c}_{n}", "nan")) for c in CASE_METRICS} for n in names}
            out.append(case)
        return out


def best_val_dice(run_dir: str | os.PathLike) -> float:
    """The run's best validation DICE: the largest ``val_dice`` in its ``logs/metrics.csv``
    (Lightning's CSV log; the value that chose ``best.ckpt``); NaN if validation never ran."""
    p = Path(run_dir) / "logs" / "metrics.csv"
    if not p.is_file():
        return float("nan")
    with open(p, newline="") as fh:
        values = [_num(r["val_dice"]) for r in csv.DictReader(fh) if r.get("val_dice") not in (None, "")]
    values = [v for v in values if v == v]
    return max(values) if values else float("nan")
