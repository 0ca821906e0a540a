"""Run a grid: one shared split, resumable, every finished run's rows in ``results.csv``.

Experiment folder ``DIR/``:

``experiment.yaml``   the resolved experiment (base configs merged, grid normalised,
                      seeds listed); a later call may *grow* it — more repeats, folds,
                      methods, sweep values: only the new runs run — but a config that
                      would change (or drop) a finished run is refused, naming the run
                      and key, unless ``force``
``split.json``        the one split every run uses (``split_<dataset>.json`` per dataset
                      in a multi-dataset grid), drawn once (or copied from the base's
                      ``data.split_file``) and passed to each run as ``data.split_file``
``runs/<dataset>/<model>/<method>/repeat<r>/``   ordinary run folders (see
                      :mod:`medseg.training.run`); ``…/repeat<r>/fold<f>/`` with
                      ``grid.folds`` > 1 (cross-validation over scans; the folds are
                      stored in ``split.json``)
``results.csv``       per-case rows of the finished runs (:mod:`.results`; with several
                      labels a headline row per case — the mean over labels — and one
                      row per case and label)

Resume rule: a run is done exactly when its rows are in ``results.csv``. Every other
run of the plan is (re)trained from scratch — its folder replaced, as
``medseg train --force`` would — and its rows appended only after its test
evaluation is written. Re-running the same command therefore skips the finished
runs and redoes only the rest; a run killed at any moment costs at most itself.

With ``force`` and a changed config, the rows of runs whose resolved train config
changed (or that left the grid) are removed from ``results.csv`` and those runs are
redone; runs whose config is unchanged are kept.

Backends execute the runs (:class:`Backend`): :class:`LocalBackend` trains them one
after the other in this process (the default, ``--backend local``);
:class:`~medseg.experiments.ray_backend.RayBackend` (``--backend ray``, the optional
``medseg[ray]`` extra) submits each as a Ray task with the grid's ``cpus_per_run`` /
``gpus_per_run``. A backend only maps :func:`execute_run` over :class:`RunJob` s
(plain, picklable data) and yields each result as it completes; the driver here
writes ``results.csv``, so every backend produces the same file under the same
resume rule.

A run whose config asks for several devices or nodes (``train.devices``,
``train.num_nodes``; see :func:`medseg.training.run.is_distributed`) is executed as a
``python -m medseg train`` subprocess rather than in the calling process: Lightning's
DDP launcher re-executes the *command line* once per extra device, which must be
that run's ``medseg train``, not the grid driver (or a Ray worker).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import yaml

from ..errors import ConfigError, MedsegError
from ..io import atomic_write_text
from . import results as results_mod
from .grid import RunSpec, comparable, expand, first_difference, split_file_name

EXPERIMENT_FILE = "experiment.yaml"
#: the data keys a grid's shared split is drawn from (:func:`medseg.data.splits.make_split`)
SPLIT_KEYS = ("dataset", "root", "layout", "num_cases", "split", "split_seed", "split_file", "train_frames",
              "val_frames", "test_frames", "folds")


# --------------------------------------------------------------------------- backends


@dataclass
class RunJob:
    """What a backend executes: one run's folder and resolved config (plain data)."""

    rel_dir: str
    run_dir: str
    config: dict[str, Any]
    progress: bool = False
    #: resources a cluster backend reserves for the run (grid.cpus_per_run / gpus_per_run)
    cpus: float = 1
    gpus: float = 0


def execute_run(job: RunJob) -> list[dict[str, Any]]:
    """Train and test one run from scratch; return its per-case test scores (each with
    the run's ``best_val_dice``)."""
    from ..training.run import is_distributed, train_run

    try:
        if is_distributed(job.config):
            _train_subprocess(job)
        else:
            train_run(job.config, job.run_dir, force=True, progress=job.progress)
    except MedsegError as exc:
        raise type(exc)(f"run {job.rel_dir}: {exc}") from None
    best = results_mod.best_val_dice(job.run_dir)
    return [{**c, "best_val_dice": best} for c in results_mod.read_cases_csv(Path(job.run_dir) / "cases.csv")]


def _train_subprocess(job: RunJob) -> None:
    """``python -m medseg train --force`` for one run (multi-device runs, see the module docstring)."""
    from ..config import dump_config

    parent = Path(job.run_dir).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd, cfg_path = tempfile.mkstemp(prefix=f".{Path(job.run_dir).name}.", suffix=".yaml", dir=parent)
    os.close(fd)
    try:
        dump_config(job.config, cfg_path)
        cmd = [sys.executable, "-m", "medseg", "train", "--config", cfg_path, "--out", job.run_dir,
               "--force", *([] if job.progress else ["--no-progress"])]
        proc = subprocess.run(cmd, stdout=None if job.progress else subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    finally:
        Path(cfg_path).unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout or "").splitlines() if ln.strip()]
        why = next((ln.split("error: ", 1)[1] for ln in reversed(lines) if ln.startswith("medseg: error: ")),
                   lines[-1] if lines else "no output")
        raise MedsegError(f"medseg train failed (exit {proc.returncode}): {why}")


class Backend:
    """Executes run jobs. Subclasses implement :meth:`map` (yield results as they finish)."""

    name = "base"

    def map(self, fn: Callable[[RunJob], Any], jobs: list[RunJob]) -> Iterator[tuple[RunJob, Any]]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class LocalBackend(Backend):
    """Runs the jobs one after the other in this process (errors propagate: the grid stops)."""

    name = "local"

    def map(self, fn, jobs):
        for job in jobs:
            yield job, fn(job)

    def describe(self) -> str:
        return "local (sequential, this process)"


def _ray_backend(**options: Any) -> Backend:
    from .ray_backend import RayBackend  # imports ray only when chosen (optional extra)

    return RayBackend(**options)


#: backend name → factory(**options). Other backends register here.
BACKENDS: dict[str, Callable[..., Backend]] = {"local": LocalBackend, "ray": _ray_backend}


def get_backend(name: str | Backend, **options: Any) -> Backend:
    """A backend by name; ``options`` go to its factory (``local`` takes none, ``ray`` an ``address``)."""
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise MedsegError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)})")
    options = {k: v for k, v in options.items() if v is not None}
    if name == "local" and options:
        raise MedsegError(f"--backend local takes no {', '.join('--' + k for k in options)}")
    return BACKENDS[name](**options)


# --------------------------------------------------------------------------- the folder


def load_experiment_file(out_dir: str | Path) -> dict[str, Any] | None:
    p = Path(out_dir) / EXPERIMENT_FILE
    if not p.is_file():
        return None
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        raise MedsegError(f"{p}: not valid YAML") from None
    if not isinstance(data, dict) or "datasets" not in data or "grid" not in data:
        raise MedsegError(f"{p}: not a medseg experiment file")
    return data


def write_experiment_file(out_dir: Path, resolved: Mapping[str, Any]) -> None:
    text = ("# written by `medseg experiment`: the resolved experiment (do not edit; a different\n"
            "# config for this folder is refused unless --force)\n"
            + yaml.safe_dump(dict(resolved), sort_keys=False))
    atomic_write_text(out_dir / EXPERIMENT_FILE, text)


def plain_config(obj: Any) -> Any:
    """YAML round trip, so in-memory configs compare like the stored ones."""
    return yaml.safe_load(yaml.safe_dump(obj, sort_keys=False))


def check_folder(out_dir: Path, resolved: Mapping[str, Any], force: bool) -> dict[str, Any] | None:
    """Refuse a folder holding another experiment, or a change to a finished run (unless
    force); return the old experiment when the config differs (None otherwise)."""
    from ..io import folder_kind

    kind = folder_kind(out_dir) if out_dir.is_dir() else None
    if kind not in (None, "experiment"):  # a dataset, run, cache … medseg made: never taken over
        raise MedsegError(f"{out_dir}: is a medseg {kind} folder, not an experiment; refusing to write an "
                          "experiment into it even with --force (choose another --out)")
    old = load_experiment_file(out_dir)
    if old is None:
        if out_dir.exists() and any(out_dir.iterdir()) and not force:
            raise MedsegError(f"{out_dir}: folder exists and is not an experiment folder "
                              f"(no {EXPERIMENT_FILE}); choose another --out or use --force")
        return None
    if first_difference(comparable(old), comparable(plain_config(dict(resolved)))) is None:
        return None
    conflict = growth_conflict(out_dir, old, expand(resolved))
    if conflict is not None and not force:
        raise MedsegError(f"{out_dir / EXPERIMENT_FILE}: {conflict} (use --force to continue with the new "
                          "config; runs whose config changed are redone, runs that left the grid dropped)")
    return old


def growth_conflict(out_dir: Path, old: Mapping[str, Any], plan: list[RunSpec]) -> str | None:
    """Why the new plan is more than a growth of the old experiment, or None.

    Growing — more repeats, folds, methods, sweep values — leaves every finished run
    in the plan with its config unchanged, and needs no ``--force``.
    """
    finished = results_mod.finished_runs(out_dir / results_mod.FILENAME)
    if not finished:
        return None
    try:
        old_cfgs = {s.rel_dir: plain_config(s.config) for s in expand(old)}
    except MedsegError as exc:
        return f"the experiment there cannot be expanded any more ({exc})"
    new_cfgs = {s.rel_dir: plain_config(s.config) for s in plan}
    for rel in sorted(finished):
        if rel not in new_cfgs:
            return f"the finished run {rel} is not in the new grid"
        diff = first_difference(old_cfgs.get(rel), new_cfgs[rel])
        if diff is not None:
            key, was, now = diff
            return f"the finished run {rel} would change: '{key}' is {was!r} there, {now!r} now"
    return None


def _reconcile(out_dir: Path, old: Mapping[str, Any], plan: list[RunSpec]) -> int:
    """After a forced config change: drop rows of runs whose config changed or left the grid."""
    try:
        old_cfgs = {s.rel_dir: plain_config(s.config) for s in expand(old)}
    except MedsegError:
        old_cfgs = {}
    new_cfgs = {s.rel_dir: plain_config(s.config) for s in plan}
    same = {k for k, v in new_cfgs.items() if old_cfgs.get(k) == v}
    # a dataset that left the grid, or changed a key its split is drawn from, gets a new split
    # (run keys such as data.fold or data.train_size, and slice size or window, do not)
    for label, cfg in old["datasets"].items():
        new = next((s.config for s in plan if s.dataset == label), None)
        if new is None or any(plain_config(new["data"]).get(k) != cfg["data"].get(k) for k in SPLIT_KEYS):
            (out_dir / split_file_name(old, label)).unlink(missing_ok=True)
    return results_mod.prune(out_dir / results_mod.FILENAME, lambda r: r["run_dir"] in same)


def check_splits(out_dir: Path, resolved: Mapping[str, Any], plan: list[RunSpec] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Before anything is written: every recorded split file is a split of its dataset; a
    split file that finished runs were trained on is still there — never redrawn silently (a
    new draw could differ: scans added to or removed from the data root); the splits still to
    draw are drawn now, in memory; every run's ``data.train_size`` fits its fold's training
    scans (``plan``). Returns dataset label → a new split to save."""
    from ..data.splits import full_split, load_split

    finished: dict[str, set[str]] = {}
    for r in results_mod.read_results(out_dir / results_mod.FILENAME):
        finished.setdefault(r["dataset"], set()).add(r["run_dir"])
    drawn = {}
    for label, cfg in resolved["datasets"].items():
        path = out_dir / split_file_name(resolved, label)
        if path.exists() or path.is_symlink():
            split = load_split(path, cfg["data"]["dataset"])  # names the file and the problem
        elif finished.get(label):
            raise MedsegError(f"{path}: missing, but {len(finished[label])} finished run(s) of this experiment "
                              "were trained and tested on it; a new draw could differ, so it is not redrawn: "
                              "restore the file, or run the experiment into a new --out")
        else:
            split = drawn[label] = full_split(cfg["data"])
        _check_train_sizes(path, split, [s for s in plan or [] if s.dataset == label])
    return drawn


def _check_train_sizes(path: Path, split: Mapping[str, Any], specs: list[RunSpec]) -> None:
    """A run's ``data.train_size`` larger than its fold's training scans: refused before any run."""
    from ..data.splits import narrow_split

    for s in specs:
        data = s.config["data"]
        if data.get("train_size") is None:
            continue
        train = narrow_split(split, {**data, "train_size": None}, str(path))["train"]
        if data["train_size"] > len(train):
            raise ConfigError(f"experiment key 'grid.train_sizes': {data['train_size']} training scans asked "
                              f"for, but {path.name} has {len(train)} for run {s.rel_dir}")


def ensure_splits(out_dir: Path, resolved: Mapping[str, Any],
                  drawn: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Path]:
    """Save the splits ``drawn`` by :func:`check_splits` (drawing any still missing) and
    return the shared split file of every dataset of the grid."""
    from ..data.splits import full_split, save_split

    drawn = dict(drawn or {})
    paths = {}
    for label, cfg in resolved["datasets"].items():
        path = out_dir / split_file_name(resolved, label)
        if not path.is_file():
            save_split(drawn.get(label) or full_split(cfg["data"]), path)
        paths[label] = path.resolve()
    return paths


# --------------------------------------------------------------------------- running


@dataclass
class GridOutcome:
    """What a call did: ``ran`` lists the run folders trained by this call."""

    total: int
    done_before: int
    ran: list[str] = field(default_factory=list)
    remaining: int = 0
    out_dir: Path | None = None


def plan_status(resolved: Mapping[str, Any], out_dir: str | Path) -> list[tuple[RunSpec, bool]]:
    """Every run of the plan with whether it is done (rows in results.csv)."""
    done = results_mod.finished_runs(Path(out_dir) / results_mod.FILENAME)
    return [(s, s.rel_dir in done) for s in expand(resolved)]


def make_job(spec: RunSpec, out_dir: Path, split_path: Path, progress: bool = False,
             resources: Mapping[str, Any] | None = None) -> RunJob:
    cfg = copy.deepcopy(spec.config)
    cfg["data"]["split_file"] = str(split_path)
    res = dict(resources or {})
    return RunJob(spec.rel_dir, str((out_dir / spec.rel_dir).resolve()), cfg, progress,
                  cpus=res.get("cpus_per_run", 1), gpus=res.get("gpus_per_run", 0))


def result_rows(spec: RunSpec, cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``results.csv`` rows of one run: per case its headline row (``label`` "") and,
    with several labels (``c["labels"]``, see :func:`.results.read_cases_csv`), one row per label."""
    nan = float("nan")

    def row(c: Mapping[str, Any], label: str, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {"dataset": spec.dataset, "model": spec.model, "regularizer": spec.regularizer,
                "params": spec.params_json, "repeat": spec.repeat, "fold": spec.fold, "seed": spec.seed,
                "case_id": c["case_id"], results_mod.LABEL: label, "dice": scores["dice"], "iou": scores["iou"],
                "hd95": scores.get("hd95", nan), "nsd": scores.get("nsd", nan),
                "best_val_dice": c.get("best_val_dice", nan), "run_dir": spec.rel_dir}

    out = []
    for c in cases:
        out.append(row(c, "", c))
        out += [row(c, name, scores) for name, scores in (c.get("labels") or {}).items()]
    return out


def run_experiment(resolved: Mapping[str, Any], out_dir: str | Path, *,
                   backend: str | Backend = "local", backend_options: Mapping[str, Any] | None = None,
                   force: bool = False,
                   max_runs: int | None = None, progress: bool = True, run_progress: bool = False,
                   on_run_done: Callable[[RunSpec], None] | None = None) -> GridOutcome:
    """Run every unfinished run of the grid; see the module docstring for the rules.

    ``backend`` is a name of :data:`BACKENDS` (with ``backend_options``, e.g. Ray's
    ``address``) or a :class:`Backend`; ``max_runs`` stops after that many runs (the
    rest stay for the next call);
    ``on_run_done(spec)`` is called after each run's rows are in ``results.csv``.
    The folder is locked for the whole call: a second grid on it is refused, naming
    the holder's pid.
    """
    from ..io import folder_lock

    with folder_lock(Path(out_dir), "experiment"):
        return _run_experiment_locked(resolved, out_dir, backend=backend, backend_options=backend_options,
                                      force=force, max_runs=max_runs, progress=progress,
                                      run_progress=run_progress, on_run_done=on_run_done)


def _run_experiment_locked(resolved, out_dir, *, backend, backend_options, force, max_runs, progress,
                           run_progress, on_run_done) -> GridOutcome:
    from tqdm.auto import tqdm

    from ..io import mark_folder

    out_dir = Path(out_dir)
    plan = expand(resolved)
    be = get_backend(backend, **dict(backend_options or {}))
    old = check_folder(out_dir, resolved, force)
    drawn = check_splits(out_dir, resolved, plan)  # every check (and draw) before the first write
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_folder(out_dir, "experiment")
    if old is not None:
        _reconcile(out_dir, old, plan)
    write_experiment_file(out_dir, resolved)
    splits = ensure_splits(out_dir, resolved, drawn)

    results_path = out_dir / results_mod.FILENAME
    done = results_mod.finished_runs(results_path)
    todo = [s for s in plan if s.rel_dir not in done]
    outcome = GridOutcome(total=len(plan), done_before=len(plan) - len(todo), out_dir=out_dir)
    if max_runs is not None:
        todo = todo[:max(0, max_runs)]
    by_dir = {s.rel_dir: s for s in todo}
    resources = resolved.get("resources")
    jobs = [make_job(s, out_dir, splits[s.dataset], run_progress, resources) for s in todo]
    bar = tqdm(total=len(plan), initial=outcome.done_before, desc=f"grid ({be.name})", unit="run",
               disable=not progress, dynamic_ncols=True)
    try:
        for job, cases in be.map(execute_run, jobs):
            spec = by_dir[job.rel_dir]
            results_mod.append_run(results_path, result_rows(spec, cases))
            outcome.ran.append(spec.rel_dir)
            bar.update(1)
            bar.set_postfix_str(f"last: {spec.dataset}/{spec.model}/{spec.method}/repeat{spec.repeat}")
            if on_run_done is not None:
                on_run_done(spec)
    finally:
        bar.close()
    outcome.remaining = outcome.total - outcome.done_before - len(outcome.ran)
    return outcome
