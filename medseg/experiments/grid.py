"""Experiment configs: a base train config plus a ``grid``, expanded into runs.

The paper's comparisons (Shi et al., ICASSP 2022: Table 1 / Fig. 1, the k
ablation of Fig. 3) are grids of ordinary training runs that differ only in the
model, the regularizer (and its parameters) and the seed; every run of a grid
uses the same data split. An experiment config says which::

    base: configs/cpu/pancreas_unet.yaml   # a train config (see medseg.config)
    # optional train-config sections, merged over the base for every run:
    train: {epochs: 4}
    data: {size: [96, 96]}
    # model: …  regularizer: …  eval: …  seed: 0
    grid:
      models: [unet, attention_unet]      # default: [the base's model.name]
      regularizers:                       # default: [the base's regularizer]
        - none
        - heuristic                       # a name: that regularizer's defaults
        - {name: dropblock, drop_prob: 0.1, block_size: 5}   # name + parameters
      sweep:                              # dotted key → values; cartesian product
        regularizer.k: [0, 1, 2, 3, 4, 5]
      repeats: 5                          # default 5
      seeds: [0, 1, 2, 3, 4]              # optional; default seed of repeat r = base seed + r
      folds: 6                            # optional: cross-validation over scans (Pancreas-CT);
                                          #   default the base's data.folds (1: the fixed split)
      run_folds: [0, 1, 2]                # optional: the folds to run (default all; grow later)
      datasets:                           # optional: several base configs (multi-dataset grid);
        - configs/cpu/pancreas_unet.yaml  #   replaces `base`, one entry per dataset
        - configs/cpu/bagls_unet.yaml
      tune: true                          # optional: an equal tuning budget — every method but none
                                          #   gets the same number of candidate strengths, chosen per
                                          #   repeat/fold on validation DICE (see medseg.experiments.tuning)
      tune_values: {dropout: {p: [0.05, 0.1, 0.2]}}   # optional: a method's own candidates
      train_sizes: [2, 4, 8]              # optional: a learning curve — each method trained on that many
                                          #   training scans (data.train_size: a seeded, nested subset of
                                          #   the split's training scans; validation and test unchanged)
      cpus_per_run: 1                     # resources of one run on a cluster backend (Ray);
      gpus_per_run: 0                     #   default 1 CPU, no GPU; the local backend ignores them
    report:                               # optional: options of `medseg report` (change no run)
      failed_below: 0.1                   #   best val DICE below this: a run that did not converge

Rules (each checked; a violation is a :class:`~medseg.errors.ConfigError` naming the key):

* top-level keys: ``base``, ``grid``, ``description``, ``report`` and the train sections
  ``data``, ``model``, ``regularizer``, ``train``, ``eval``, ``seed``; ``grid`` keys:
  ``models``, ``regularizers``, ``sweep``, ``repeats``, ``seeds``, ``folds``, ``run_folds``,
  ``datasets``, ``tune``, ``tune_values``, ``train_sizes``, ``cpus_per_run``, ``gpus_per_run``.
* ``grid.train_sizes`` is a sweep of ``data.train_size`` (its runs are named
  ``<method>_data.train_size=<n>``), so it cannot also be in ``grid.sweep``; each size must
  fit the split's training scans. ``grid.tune`` expands each method into its candidates
  (``<method>_p=0.2``); a tuned parameter cannot also be fixed in the method's entry or
  swept, and every tuned method gets the same number of candidates.
* ``grid.cpus_per_run`` (> 0, default 1) and ``grid.gpus_per_run`` (>= 0, default 0;
  fractions allowed) are what a cluster backend reserves for each run. They do not
  change any result, so they live apart from the runs' definition (``resources`` in
  the resolved experiment) and may differ between calls on the same folder.
* ``base`` (and each ``grid.datasets`` entry) is a path: absolute; else relative to
  the working directory if it exists there; else relative to the experiment
  file's folder or the nearest of its parent folders where it exists (so
  ``configs/cpu/pancreas_unet.yaml`` works from the repository root and from anywhere).
* every ``key=value`` override on the command line applies to the experiment
  mapping before anything else: ``grid.regularizers=[none,heuristic]
  grid.repeats=2 train.epochs=1 base=configs/cpu/bagls_unet.yaml``.
* a ``grid.regularizers`` entry replaces the whole ``regularizer`` section of the run.
* ``grid.sweep`` keys are dotted config keys (nested mappings are flattened, so
  ``grid.sweep.regularizer.k=[0,1]`` works on the command line). A
  ``regularizer.<param>`` key applies only to the regularizers that have that
  parameter (the others run once, unswept); other keys apply to every run. Keys
  that the grid sets itself (``seed``, ``model.name``, ``regularizer.name``) or
  that would change the shared split (``data.root``, ``data.split``, …) cannot be swept.
* with ``grid.regularizers`` a top-level ``regularizer`` section (or ``regularizer.k=3``
  override) would be ignored, so it is an error (use ``grid.sweep.regularizer.k=[3]``);
  likewise ``model.name`` with ``grid.models``.
* ``grid.seeds`` needs at least ``repeats`` entries (the first ``repeats`` are used);
  given without ``repeats`` it sets ``repeats = len(seeds)``. The same seed is used
  for repeat r of every method, so repeats pair up across methods.
* the datasets of a multi-dataset grid must differ (``data.dataset``).
* ``grid.folds`` K > 1 (Pancreas-CT only; BAGLS has a fixed official test set):
  the ``data.num_cases`` selected scans are split into K seeded test folds stored
  in the shared split file; fold f's runs test on its scans, validate on
  ``data.split[1]`` scans drawn from the rest and train on the others, so every
  selected scan is a test case exactly once per repeat. The same seed is used for
  every fold of a repeat; runs pair up by (case, repeat, fold).

Each run is a :class:`RunSpec`: its folder ``runs/<dataset>/<model>/<method>/repeat<r>``
(``…/repeat<r>/fold<f>`` with cross-validation)
(``<method>`` = regularizer name, then ``_param=value`` for each parameter), and its
resolved, validated train config. Runs are listed repeat-major (all methods of repeat
0 first), so a grid stopped half-way has complete early repeats for every method.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import SECTIONS, validate
from ..config_files import apply_overrides, merge, read_yaml
from ..errors import ConfigError

TOP_KEYS = ("base", "grid", "description", "report", *SECTIONS, "seed")
GRID_KEYS = ("models", "regularizers", "sweep", "repeats", "seeds", "folds", "run_folds", "datasets",
             "tune", "tune_values", "train_sizes", "cpus_per_run", "gpus_per_run")
#: the data key a learning curve (grid.train_sizes) sweeps
TRAIN_SIZE_KEY = "data.train_size"
#: ``report:`` keys of an experiment config → default (they change no run)
REPORT_KEYS = {"failed_below": 0.1}
DEFAULT_REPEATS = 5
#: resources of one run on a cluster backend: grid key → (default, smallest allowed, exclusive)
RESOURCE_KEYS = {"cpus_per_run": (1, 0, True), "gpus_per_run": (0, 0, False)}
#: keys the grid sets itself or that would break the shared split: not sweepable
UNSWEEPABLE = ("seed", "model.name", "regularizer.name", "data.dataset", "data.root", "data.layout",
               "data.num_cases", "data.split", "data.split_seed", "data.split_file",
               "data.train_frames", "data.val_frames", "data.test_frames", "data.cache_dir",
               "data.folds", "data.fold")


@dataclass
class RunSpec:
    """One run of a grid."""

    dataset: str
    model: str
    regularizer: str
    #: regularizer parameters given by the grid (and swept values), plus swept
    #: non-regularizer keys under their dotted name — what tells methods apart
    params: dict[str, Any]
    repeat: int
    seed: int
    #: run folder relative to the experiment folder (the run's key in results.csv)
    rel_dir: str
    #: resolved train config (without ``data.split_file``, which the runner sets)
    config: dict[str, Any] = field(repr=False)
    #: cross-validation fold (0 without cross-validation)
    fold: int = 0

    @property
    def params_json(self) -> str:
        return params_to_json(self.params)

    @property
    def method(self) -> str:
        return method_label(self.regularizer, self.params)


def params_to_json(params: Mapping[str, Any]) -> str:
    """The canonical text of a parameter set in results.csv (sorted-key JSON)."""
    return json.dumps(dict(params), sort_keys=True)


def method_label(regularizer: str, params: Mapping[str, Any] | str) -> str:
    """``heuristic`` or ``heuristic (k=3)`` — how a method is named in tables/figures."""
    if isinstance(params, str):
        params = json.loads(params) if params.strip() else {}
    if not params:
        return regularizer
    inner = ", ".join(f"{k}={_value_text(v)}" for k, v in sorted(params.items()))
    return f"{regularizer} ({inner})"


def _value_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _slug(regularizer: str, params: Mapping[str, Any]) -> str:
    parts = [regularizer] + [f"{k}={_value_text(v)}" for k, v in sorted(params.items())]
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))


# --------------------------------------------------------------------------- loading


def resolve_base(path: str | os.PathLike, config_file: str | os.PathLike | None,
                 key: str = "base") -> Path:
    """Find a base train config (see the module docstring for the search order)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p]
        if config_file is not None:
            folder = Path(config_file).resolve().parent
            candidates += [d / p for d in (folder, *folder.parents)]
    for c in candidates:
        if c.is_file():
            return c
    where = f" (looked in the working directory and next to {config_file})" if config_file else ""
    raise ConfigError(f"experiment key '{key}': config file '{path}' not found{where}")


def read_experiment(path: str | os.PathLike | None, overrides: Iterable[str] = (),
                    raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read an experiment file (or take ``raw``), apply overrides, resolve it.

    Returns the *resolved experiment*: a plain mapping (written to
    ``DIR/experiment.yaml``) with ``datasets`` (label → the validated base train
    config of that dataset, sections merged), ``grid`` (normalised), ``seeds``
    (label → seed per repeat), ``report`` (report options) and ``source`` (file,
    overrides, base paths; not compared when an experiment folder is continued).
    """
    data = dict(read_yaml(path)) if raw is None else copy.deepcopy(dict(raw))
    overrides = list(overrides)
    data = apply_overrides(data, overrides)
    grid = _check_top_keys(data)
    datasets, base_paths = _base_configs(data, grid, path)
    folds, run_folds = _folds(grid, datasets)
    first = next(iter(datasets.values()))
    repeats, seeds_given = _repeats_and_seeds(grid)
    seeds = {label: (list(seeds_given[:repeats]) if seeds_given is not None
                     else [cfg["seed"] + r for r in range(repeats)])
             for label, cfg in datasets.items()}
    regularizers = _regularizers(grid, first)
    sweep = _flatten_sweep(grid.get("sweep") or {})
    resolved_grid = {"models": _models(grid, first), "regularizers": regularizers, "sweep": sweep,
                     "repeats": repeats, "folds": folds, "run_folds": run_folds}
    # written only when used, so an experiment without them keeps its experiment.yaml
    train_sizes = _train_sizes(grid, sweep)
    _check_train_sizes(train_sizes, datasets)
    if train_sizes is not None:
        resolved_grid["train_sizes"] = train_sizes
    from .tuning import resolve_candidates

    tune = resolve_candidates(grid, regularizers, sweep)
    if tune:
        resolved_grid["tune"] = tune
    resolved = {
        "datasets": datasets,
        "grid": resolved_grid,
        "seeds": seeds,
        "resources": _resources(grid),
        "report": _report_options(data.get("report")),
        "source": {"config": None if path is None else str(path), "overrides": overrides,
                   "base": base_paths, "description": data.get("description")},
    }
    expand(resolved)  # validates every run's config now, before anything runs
    return resolved


def _check_top_keys(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Unknown keys, and sections the grid would silently override; returns ``grid``."""
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"experiment key '{key}' is unknown (known: {', '.join(TOP_KEYS)})")
    grid = data.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise ConfigError("experiment key 'grid' must be a mapping")
    for key in grid:
        if key not in GRID_KEYS:
            raise ConfigError(f"experiment key 'grid.{key}' is unknown (grid has: {', '.join(GRID_KEYS)})")
    if "regularizers" in grid and data.get("regularizer"):
        key = next(iter(data["regularizer"]))
        raise ConfigError(f"experiment key 'regularizer.{key}' has no effect: grid.regularizers sets the "
                          "regularizer of every run (give parameters in its entries, e.g. {name: heuristic, "
                          f"k: 3}}, or sweep them: grid.sweep.regularizer.{key}=[...])")
    if "models" in grid and isinstance(data.get("model"), Mapping) and "name" in data["model"]:
        raise ConfigError("experiment key 'model.name' has no effect: grid.models sets the model of every run")
    return grid


def _base_configs(data: Mapping[str, Any], grid: Mapping[str, Any], path: str | os.PathLike | None
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """label → validated base config (the experiment's sections merged in), and label → its file."""
    sections = {k: v for k, v in data.items() if k in (*SECTIONS, "seed")}
    bases = grid.get("datasets")
    if bases is None:
        if "base" not in data:
            raise ConfigError("experiment key 'base' is required (a train config, e.g. "
                              "configs/cpu/pancreas_unet.yaml) unless grid.datasets lists them")
        bases, base_key = [data["base"]], "base"
    else:
        if not isinstance(bases, list) or not bases:
            raise ConfigError("experiment key 'grid.datasets' must be a non-empty list of train configs")
        base_key = "grid.datasets"
    datasets: dict[str, dict[str, Any]] = {}
    base_paths: dict[str, str] = {}
    for i, b in enumerate(bases):
        key = base_key if base_key == "base" else f"grid.datasets[{i}]"
        if not isinstance(b, (str, os.PathLike)):
            raise ConfigError(f"experiment key '{key}' must be a path to a train config, got {b!r}")
        bpath = resolve_base(b, path, key)
        cfg = validate(merge(read_yaml(bpath), sections))
        label = cfg["data"]["dataset"]
        if label in datasets:
            raise ConfigError(f"experiment key '{key}': dataset '{label}' appears twice in the grid")
        datasets[label] = cfg
        base_paths[label] = str(bpath)
    return datasets, base_paths


def _models(grid: Mapping[str, Any], first: Mapping[str, Any]) -> list[str]:
    models = grid.get("models", [first["model"]["name"]])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise ConfigError("experiment key 'grid.models' must be a non-empty list of model names")
    models = [str(m) for m in models]
    if len(set(models)) != len(models):
        raise ConfigError(f"experiment key 'grid.models' lists a model twice: {models}")
    return models


def _regularizers(grid: Mapping[str, Any], first: Mapping[str, Any]) -> list[dict[str, Any]]:
    regs = grid.get("regularizers")
    if regs is None:
        regs = [dict(first["regularizer"])]
    if isinstance(regs, (str, Mapping)):
        regs = [regs]
    if not isinstance(regs, list) or not regs:
        raise ConfigError("experiment key 'grid.regularizers' must be a non-empty list")
    return [_regularizer_entry(r, i) for i, r in enumerate(regs)]


def _folds(grid: Mapping[str, Any], datasets: dict[str, dict[str, Any]]) -> tuple[int, list[int]]:
    """``grid.folds`` (default: the base's ``data.folds``) set on every dataset; the folds to run."""
    first = next(iter(datasets.values()))
    k = grid.get("folds", first["data"]["folds"])
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"experiment key 'grid.folds' must be an integer >= 1, got {k!r}")
    for label, cfg in datasets.items():
        if k > 1 and label == "bagls":
            raise ConfigError("experiment key 'grid.folds': BAGLS has a fixed official test set (test/); "
                              "cross-validation over scans (folds > 1) is for Pancreas-CT")
        try:
            datasets[label] = validate({**cfg, "data": {**cfg["data"], "folds": k, "fold": 0}})
        except ConfigError as exc:
            raise ConfigError(f"experiment key 'grid.folds': {exc}") from None
    run_folds = grid.get("run_folds", list(range(k)))
    if (not isinstance(run_folds, list) or not run_folds or len(set(map(str, run_folds))) != len(run_folds)
            or any(isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < k for f in run_folds)):
        raise ConfigError(f"experiment key 'grid.run_folds' must list distinct folds in 0 … {k - 1}, "
                          f"got {run_folds!r}")
    return k, sorted(run_folds)


def _report_options(report: Any) -> dict[str, Any]:
    if report is None:
        report = {}
    if not isinstance(report, Mapping):
        raise ConfigError("experiment key 'report' must be a mapping (e.g. {failed_below: 0.1})")
    out = dict(REPORT_KEYS)
    for key, value in report.items():
        if key not in REPORT_KEYS:
            raise ConfigError(f"experiment key 'report.{key}' is unknown (report has: {', '.join(REPORT_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"experiment key 'report.{key}' must be a number in [0, 1], got {value!r}")
        out[key] = float(value)
    return out


def _regularizer_entry(entry: Any, i: int) -> dict[str, Any]:
    if isinstance(entry, str):
        return {"name": entry}
    if isinstance(entry, Mapping) and "name" in entry and isinstance(entry["name"], str):
        return dict(entry)
    raise ConfigError(f"experiment key 'grid.regularizers[{i}]' must be a regularizer name or a "
                      f"mapping with 'name' (and parameters), got {entry!r}")


def _flatten_sweep(sweep: Any) -> dict[str, list[Any]]:
    if not isinstance(sweep, Mapping):
        raise ConfigError("experiment key 'grid.sweep' must map dotted config keys to lists of values")
    out: dict[str, list[Any]] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                walk(key, v)
                continue
            if not isinstance(v, list) or not v:
                raise ConfigError(f"experiment key 'grid.sweep.{key}' must be a non-empty list of values")
            if key in UNSWEEPABLE or (key.startswith("regularizer.") and key.count(".") != 1):
                raise ConfigError(f"experiment key 'grid.sweep.{key}' cannot be swept (use grid.models, "
                                  "grid.regularizers, grid.seeds; the data split is shared)")
            if "." not in key:
                raise ConfigError(f"experiment key 'grid.sweep.{key}' must be a dotted config key "
                                  "such as regularizer.k or train.lr")
            out[key] = list(v)

    walk("", sweep)
    return out


def _train_sizes(grid: Mapping[str, Any], sweep: Mapping[str, list[Any]]) -> list[int] | None:
    sizes = grid.get("train_sizes")
    if sizes is None:
        return None
    if (not isinstance(sizes, list) or not sizes
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes)):
        raise ConfigError(f"experiment key 'grid.train_sizes' must be a non-empty list of integers >= 1, "
                          f"got {sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"experiment key 'grid.train_sizes' lists a size twice: {sizes}")
    if TRAIN_SIZE_KEY in sweep:
        raise ConfigError(f"experiment key 'grid.sweep.{TRAIN_SIZE_KEY}': use grid.train_sizes (not both)")
    return sorted(sizes)


def _check_train_sizes(sizes: list[int] | None, datasets: Mapping[str, Mapping[str, Any]]) -> None:
    """``grid.train_sizes`` sets every run's ``data.train_size``: not also the base's, and each size
    must fit the split's training scans (named as the grid key the user wrote)."""
    from ..config import training_count

    if not sizes:
        return
    for label, cfg in datasets.items():
        data = cfg["data"]
        if data.get("train_size") is not None:
            raise ConfigError(f"experiment key 'grid.train_sizes' sets data.train_size of every run; the "
                              f"{label} config's data.train_size ({data['train_size']}) would be ignored: "
                              "remove one of them")
        if not data.get("split_file") and max(sizes) > training_count(data):
            raise ConfigError(f"experiment key 'grid.train_sizes': {max(sizes)} training scans asked for, but "
                              f"the {label} split has {training_count(data)}")


def _resources(grid: Mapping[str, Any]) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for key, (default, lo, exclusive) in RESOURCE_KEYS.items():
        v = grid.get(key, default)
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or (
            v <= lo if exclusive else v < lo)
        if bad:
            raise ConfigError(f"experiment key 'grid.{key}' must be a number {'>' if exclusive else '>='} "
                              f"{lo}, got {v!r}")
        out[key] = v
    return out


def _repeats_and_seeds(grid: Mapping[str, Any]) -> tuple[int, list[int] | None]:
    seeds = grid.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ConfigError("experiment key 'grid.seeds' must be a list of non-negative integers")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"experiment key 'grid.seeds' repeats a seed: {seeds}")
    repeats = grid.get("repeats", len(seeds) if seeds is not None else DEFAULT_REPEATS)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"experiment key 'grid.repeats' must be an integer >= 1, got {repeats!r}")
    if seeds is not None and len(seeds) < repeats:
        raise ConfigError(f"experiment key 'grid.seeds' has {len(seeds)} seeds but grid.repeats is {repeats}")
    return repeats, seeds


# --------------------------------------------------------------------------- expansion


def _reg_params(name: str) -> set[str]:
    from ..regularizers import parameters

    return set(parameters(name))


def expand(resolved: Mapping[str, Any]) -> list[RunSpec]:
    """Every run of a resolved experiment, repeat-major, each with a validated config."""
    g = resolved["grid"]
    sweep: dict[str, list[Any]] = dict(g["sweep"])
    if g.get("train_sizes"):
        sweep[TRAIN_SIZE_KEY] = list(g["train_sizes"])
    tune: Mapping[str, list[dict[str, Any]]] = g.get("tune") or {}
    reg_sweep = {k: v for k, v in sweep.items() if k.startswith("regularizer.")}
    other_sweep = {k: v for k, v in sweep.items() if not k.startswith("regularizer.")}
    for key in reg_sweep:
        param = key.split(".", 1)[1]
        if not any(param in _safe_params(r["name"]) for r in g["regularizers"]):
            raise ConfigError(f"experiment key 'grid.sweep.{key}': no regularizer of the grid has "
                              f"a parameter '{param}'")
    methods: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (regularizer section, params)
    for entry in g["regularizers"]:
        name = entry["name"]
        own = {k: v for k, v in entry.items() if k != "name"}
        accepted = _safe_params(name)
        keys = [k for k in reg_sweep if k.split(".", 1)[1] in accepted]
        for candidate in tune.get(name) or [{}]:  # grid.tune: one method per candidate
            for values in itertools.product(*(reg_sweep[k] for k in keys)):
                params = {**own, **candidate}
                params.update({k.split(".", 1)[1]: v for k, v in zip(keys, values)})
                methods.append(({"name": name, **params}, params))
    combos = [dict(zip(other_sweep, values)) for values in itertools.product(*other_sweep.values())]

    specs: list[RunSpec] = []
    seen: dict[str, str] = {}
    k = g.get("folds", 1)
    for r, fold in itertools.product(range(g["repeats"]), g.get("run_folds", [0])):
        for label, base in resolved["datasets"].items():
            seed = resolved["seeds"][label][r]
            for model in g["models"]:
                for reg_section, reg_params in methods:
                    for combo in combos:
                        raw = copy.deepcopy(base)
                        raw["model"]["name"] = model
                        raw["regularizer"] = copy.deepcopy(reg_section)
                        raw["seed"] = seed
                        raw["data"]["fold"] = fold
                        for key, value in combo.items():
                            section, sub = key.split(".", 1)
                            if section not in raw or not isinstance(raw[section], dict):
                                raise ConfigError(f"experiment key 'grid.sweep.{key}' is not a config key")
                            raw[section][sub] = value
                        cfg = validate(raw)
                        params = {**reg_params, **combo}
                        rel = f"runs/{label}/{model}/{_slug(reg_section['name'], params)}/repeat{r}"
                        rel += f"/fold{fold}" if k > 1 else ""
                        if rel in seen:
                            raise ConfigError(f"experiment key 'grid': two runs share the folder {rel} "
                                              "(a regularizer listed twice with the same parameters?)")
                        seen[rel] = rel
                        specs.append(RunSpec(label, model, reg_section["name"], params, r, seed, rel, cfg,
                                             fold))
    return specs


def _safe_params(name: str) -> set[str]:
    try:
        return _reg_params(name)
    except ConfigError as exc:
        raise ConfigError(f"experiment key 'grid.regularizers': {exc}") from None


def split_file_name(resolved: Mapping[str, Any], dataset: str) -> str:
    """The grid's shared split: ``split.json`` (one dataset) or ``split_<dataset>.json``."""
    return "split.json" if len(resolved["datasets"]) == 1 else f"split_{dataset}.json"


def comparable(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved experiment that defines its runs (``source``, the
    cluster ``resources`` and the ``report`` options left out)."""
    return {k: v for k, v in resolved.items() if k not in ("source", "resources", "report")}


def first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key where two nested mappings differ: (key, old, new). A key the old
    mapping lacks and the new one has as ``None`` is no difference (a config key added since,
    whose null default is the old behaviour: ``data.train_size``, ``train.samples_per_epoch``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                if new[k] is None:
                    continue
                return key, "<absent>", new[k]
            if k not in new:
                return key, old[k], "<absent>"
            d = first_difference(old[k], new[k], key)
            if d is not None:
                return d
        return None
    return None if old == new else (prefix, old, new)
