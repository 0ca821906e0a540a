"""An equal tuning budget: every method gets the same number of candidate strengths,
and the one run on is chosen on **validation** DICE only.

``grid.tune: true`` gives every regularizer of the grid except ``none`` a list of
candidate parameter sets — its default from
:data:`medseg.regularizers.catalogue.TUNING_CANDIDATES`, or the experiment's own::

    grid:
      regularizers: [none, heuristic, dropout, dropblock]
      tune: true
      tune_values:                        # optional, per method
        dropout: {p: [0.05, 0.1, 0.2]}    #   param → values (several params: every combination)
        heuristic:                        #   or the candidates spelled out
          - {rate: 0.1, k: 1}
          - {rate: 0.1, k: 2}
          - {rate: 0.2, k: 2}

Every method must end up with the same number of candidates (the *budget*); the
baseline ``none`` has nothing to tune and runs once per repeat and fold. Each
candidate is an ordinary run of the grid (``runs/<dataset>/<model>/dropout_p=0.2/…``),
so ``results.csv`` keeps all of them, and a candidate added later is a growth of
the experiment (only its runs run).

The choice (:func:`select`) is made per dataset, model, method (other swept values
such as ``data.train_size`` held fixed), repeat and fold: the candidate whose run has
the highest best validation DICE — the same score that picked the run's checkpoint —
ties going to the earlier candidate. Test metrics never take part: :func:`select`
sees only each run's identity and ``best_val_dice``. The test result of the chosen
run is what the tuned comparison reports (``medseg report``, *Tuned comparison*).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from .grid import method_label

#: the ``params`` key that marks a tuned method's rows in the tuned analysis
TUNED_KEY = "tuned"


# --------------------------------------------------------------------------- candidates


def resolve_candidates(grid: Mapping[str, Any], regularizers: list[dict[str, Any]],
                       sweep: Mapping[str, list[Any]]) -> dict[str, list[dict[str, Any]]]:
    """``grid.tune`` / ``grid.tune_values`` → regularizer name → its candidate parameter sets
    ({} when not tuning). Every check names its key."""
    tune = grid.get("tune", False)
    values = grid.get("tune_values")
    if not isinstance(tune, bool):
        raise ConfigError(f"experiment key 'grid.tune' must be true or false, got {tune!r}")
    if not tune:
        if values is not None:
            raise ConfigError("experiment key 'grid.tune_values' needs grid.tune: true")
        return {}
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ConfigError("experiment key 'grid.tune_values' must map regularizer names to candidates, "
                          "e.g. {dropout: {p: [0.05, 0.1, 0.2]}}")
    names = [r["name"] for r in regularizers]
    for name in values:
        if name not in names:
            raise ConfigError(f"experiment key 'grid.tune_values.{name}': '{name}' is not in grid.regularizers")
        if name == "none":
            raise ConfigError("experiment key 'grid.tune_values.none': the baseline has nothing to tune")
    out = {name: _candidates(name, values.get(name)) for name in dict.fromkeys(names) if name != "none"}
    _check_budget(out)
    for entry in regularizers:
        _check_untouched(entry, out.get(entry["name"], []), sweep)
    return out


def _candidates(name: str, given: Any) -> list[dict[str, Any]]:
    from ..regularizers.catalogue import TUNING_CANDIDATES

    key = f"grid.tune_values.{name}"
    if given is None:
        if name not in TUNING_CANDIDATES:
            raise ConfigError(f"experiment key 'grid.tune': '{name}' has no default candidates; give them "
                              f"in {key} (e.g. {{param: [v1, v2, v3]}})")
        return [dict(c) for c in TUNING_CANDIDATES[name]]
    if isinstance(given, Mapping):
        if not given or any(not isinstance(v, list) or not v for v in given.values()):
            raise ConfigError(f"experiment key '{key}' must map each parameter to a non-empty list of values")
        params = list(given)
        found = [dict(zip(params, combo)) for combo in itertools.product(*(given[p] for p in params))]
    elif isinstance(given, list) and given and all(isinstance(c, Mapping) and c for c in given):
        found = [dict(c) for c in given]
    else:
        raise ConfigError(f"experiment key '{key}' must be {{param: [values]}} or a list of "
                          f"{{param: value}} candidates, got {given!r}")
    for candidate in found:
        _check_candidate(name, key, candidate)
    values = [tuple(sorted((p, _comparable(v)) for p, v in c.items())) for c in found]
    if len(set(values)) != len(values):
        raise ConfigError(f"experiment key '{key}' lists a candidate twice")
    if len({tuple(sorted(c)) for c in found}) != 1:
        raise ConfigError(f"experiment key '{key}': every candidate must set the same parameters")
    return found


def _comparable(v: Any) -> Any:
    """1 and 1.0 are the same strength."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else json.dumps(v, sort_keys=True)


def _check_candidate(name: str, key: str, candidate: Mapping[Any, Any]) -> None:
    """Parameter names of the regularizer, values it accepts; errors name the key."""
    from ..regularizers import check_params, parameters

    known = parameters(name)
    for param in candidate:
        if not isinstance(param, str) or param not in known:
            raise ConfigError(f"experiment key '{key}.{param}': '{name}' has no parameter {param!r} "
                              f"(it has: {', '.join(known) or 'none'})")
    try:
        check_params(name, dict(candidate))
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"experiment key '{key}': candidate {dict(candidate)}: {exc}") from None


def _check_budget(candidates: Mapping[str, list[dict[str, Any]]]) -> None:
    counts = {name: len(c) for name, c in candidates.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{n} {c}" for n, c in counts.items())
        raise ConfigError(f"experiment key 'grid.tune_values': every method must get the same number of "
                          f"candidates (an equal budget), got {listed}")


def _check_untouched(entry: Mapping[str, Any], candidates: list[dict[str, Any]],
                     sweep: Mapping[str, list[Any]]) -> None:
    """A tuned parameter may not also be fixed in the method's entry or swept."""
    tuned = tuned_parameters(candidates)
    for param in tuned:
        if param in entry:
            raise ConfigError(f"experiment key 'grid.regularizers': {entry['name']}'s '{param}' is tuned "
                              f"(grid.tune), so it cannot also be fixed in its entry")
        if f"regularizer.{param}" in sweep:
            raise ConfigError(f"experiment key 'grid.sweep.regularizer.{param}': '{param}' is tuned "
                              f"(grid.tune) for {entry['name']}; sweep it or tune it, not both")


def tuned_parameters(candidates: Iterable[Mapping[str, Any]]) -> list[str]:
    """The parameter names the candidates set (sorted)."""
    return sorted({p for c in candidates for p in c})


def budget(tune: Mapping[str, list[Mapping[str, Any]]]) -> int:
    """Candidates per method (the same for every tuned method)."""
    return len(next(iter(tune.values()))) if tune else 0


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class RunScore:
    """What the choice may see of a run: who it is, and its best validation DICE."""

    run_dir: str
    dataset: str
    model: str
    regularizer: str
    params: str
    repeat: int
    fold: int
    best_val_dice: float


@dataclass(frozen=True)
class Choice:
    """The candidate chosen for one method, repeat and fold (on validation DICE)."""

    dataset: str
    model: str
    regularizer: str
    rest: str            # the method's other parameters (sorted-key JSON), e.g. data.train_size
    repeat: int
    fold: int
    chosen: str          # the chosen candidate's tuned parameters (sorted-key JSON)
    run_dir: str
    best_val_dice: float
    n_candidates: int

    @property
    def method(self) -> str:
        """The tuned method's label, e.g. ``dropout (tuned=p)``."""
        return method_label(self.regularizer, tuned_params(self.rest, json.loads(self.chosen)))


def tuned_params(rest: str, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The ``params`` of a tuned method's rows: its other parameters and ``tuned`` = what was tuned."""
    return {**json.loads(rest), TUNED_KEY: "+".join(sorted(chosen))}


def run_scores(rows: Iterable[Mapping[str, Any]]) -> list[RunScore]:
    """One :class:`RunScore` per run (of ``results.csv`` rows or the report's per-run records):
    the only input of :func:`select` — no test metric is carried over."""
    seen: dict[str, RunScore] = {}
    for r in rows:
        if r["run_dir"] not in seen:
            seen[r["run_dir"]] = RunScore(r["run_dir"], r["dataset"], r["model"], r["regularizer"], r["params"],
                                          int(r["repeat"]), int(r.get("fold", 0)), float(r["best_val_dice"]))
    return list(seen.values())


def select(runs: Iterable[RunScore], tune: Mapping[str, list[Mapping[str, Any]]]) -> list[Choice]:
    """Per tuned method, repeat and fold the candidate with the highest validation DICE.

    A run counts as a candidate of ``regularizer`` when its parameters include every
    tuned parameter with one of the candidates' values; ties (and NaN scores) go to
    the earlier candidate in the candidate list.
    """
    groups: dict[tuple, list[tuple[int, RunScore, dict[str, Any]]]] = defaultdict(list)
    for run in runs:
        candidates = tune.get(run.regularizer)
        if not candidates:
            continue
        params = json.loads(run.params)
        tuned = tuned_parameters(candidates)
        chosen = {p: params.get(p) for p in tuned}
        if chosen not in candidates:
            continue  # a run of the method outside its candidate list
        rest = json.dumps({k: v for k, v in params.items() if k not in tuned}, sort_keys=True)
        key = (run.dataset, run.model, run.regularizer, rest, run.repeat, run.fold)
        groups[key].append((candidates.index(chosen), run, chosen))
    out = []
    for key, found in groups.items():
        index, run, chosen = max(found, key=lambda t: (_score(t[1].best_val_dice), -t[0]))
        out.append(Choice(*key, json.dumps(chosen, sort_keys=True), run.run_dir, run.best_val_dice, len(found)))
    return sorted(out, key=lambda c: (c.dataset, c.model, c.regularizer, c.rest, c.repeat, c.fold))


def _score(v: float) -> float:
    return -math.inf if math.isnan(v) else v


def tuned_rows(rows: Iterable[Mapping[str, Any]], tune: Mapping[str, list[Mapping[str, Any]]],
               choices: Iterable[Choice]) -> list[dict[str, Any]]:
    """The rows of the tuned comparison: every untuned method's rows as they are, and for a
    tuned method only its chosen runs' rows, relabelled ``<regularizer> (tuned=<params>)``."""
    chosen = {c.run_dir: c for c in choices}
    out = []
    for r in rows:
        if r["regularizer"] not in tune:
            out.append(dict(r))
        elif r["run_dir"] in chosen:
            c = chosen[r["run_dir"]]
            out.append({**r, "params": json.dumps(tuned_params(c.rest, json.loads(c.chosen)), sort_keys=True)})
    return out
