"""``medseg experiment`` — run a grid of training runs (resumable, one shared split)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  medseg experiment --config configs/experiments/cpu/pancreas_comparison.yaml --dry-run
  medseg experiment --config configs/experiments/cpu/pancreas_comparison.yaml \\
      --out experiments/quick grid.regularizers=[none,heuristic] grid.repeats=2 train.epochs=1
  medseg report experiments/quick
  medseg experiment --config configs/experiments/cpu/k_ablation.yaml grid.repeats=2 train.epochs=1
  medseg experiment --config configs/experiments/cpu/pancreas_comparison.yaml   # 30 runs, ~27 min

--backend ray runs one Ray task per run (a local Ray instance, or the cluster 'ray start'
made with --address auto; GPU runs ask for grid.gpus_per_run=1; README, "Scaling out").

Every key of the experiment config (grid.models, grid.regularizers, grid.sweep.<key>,
grid.repeats, grid.seeds, base) and of the train config (data.*, model.*, train.*, …)
can be overridden as key=value. Runs live in DIR/runs/<dataset>/<model>/<method>/repeat<r>/
(…/repeat<r>/fold<f>/ with grid.folds > 1: cross-validation over scans, Pancreas-CT);
finished runs append their per-case test scores to DIR/results.csv (several labels: a
row per case with the mean over labels, then one per case and label). Running the same
command again skips finished runs and redoes only unfinished ones; more repeats, folds
(grid.run_folds), methods or sweep values grow the folder without --force."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import HelpFormatter

    p = sub.add_parser("experiment", help="run a grid: models × regularizers × sweeps × repeats",
                       description="Expand an experiment config (a base train config and a grid of "
                       "models, regularizers, parameter sweeps and repeats) into runs that share one "
                       "data split, and run the unfinished ones. Each finished run appends its "
                       "per-case test scores to DIR/results.csv atomically; a rerun resumes.",
                       epilog=EXAMPLE, formatter_class=HelpFormatter)
    # SUPPRESS: no "(default: None)" in the help of required/optional-without-default arguments
    p.add_argument("--config", required=True, default=argparse.SUPPRESS, help="experiment config (YAML), e.g. "
                   "configs/experiments/cpu/pancreas_comparison.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", default=argparse.SUPPRESS,
                   help="overrides of experiment/grid/train keys, e.g. grid.repeats=2 train.epochs=1")
    p.add_argument("--out", type=Path, default=argparse.SUPPRESS,
                   help="experiment folder (default: experiments/<config file name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, which are done, and an estimated time; run nothing")
    from ..experiments.runner import BACKENDS

    p.add_argument("--backend", default="local", choices=sorted(BACKENDS),
                   help="where runs execute: local = one after the other in this process; ray = one "
                   "Ray task per run, grid.cpus_per_run/grid.gpus_per_run each (pip install 'medseg[ray]')")
    p.add_argument("--address", default=argparse.SUPPRESS, metavar="ADDR",
                   help="--backend ray: the cluster to join (auto = the one `ray start` made on this "
                   "node, or ray://HOST:10001); default: a new local Ray instance")
    p.add_argument("--max-runs", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="stop after N runs (the rest stay for the next call)")
    p.add_argument("--force", action="store_true",
                   help="continue with a config that changes or drops finished runs (those are redone or "
                   "dropped); growing a grid (repeats, folds, methods, sweep values) needs no --force")
    p.add_argument("--no-progress", action="store_true", help="no grid progress bar")
    p.add_argument("--run-progress", action="store_true",
                   help="show each run's Lightning progress bars too (off by default in a grid)")
    p.set_defaults(func=run)


def default_out(config: str) -> Path:
    return Path("experiments") / Path(config).stem


def run(args: argparse.Namespace) -> int:
    from ..errors import MedsegError
    from ..experiments.grid import read_experiment
    from ..experiments.runner import run_experiment

    max_runs = getattr(args, "max_runs", None)
    if max_runs is not None and max_runs < 0:
        raise MedsegError("--max-runs must be >= 0")
    resolved = read_experiment(args.config, getattr(args, "overrides", []))
    out = getattr(args, "out", None) or default_out(args.config)
    if args.dry_run:
        return dry_run(resolved, out)
    address = getattr(args, "address", None)
    if address is not None and args.backend != "ray":
        raise MedsegError("--address is for --backend ray")
    outcome = run_experiment(resolved, out, backend=args.backend,
                             backend_options={"address": address} if args.backend == "ray" else None,
                             force=args.force,
                             max_runs=max_runs, progress=not args.no_progress,
                             run_progress=args.run_progress)
    print(f"{outcome.total} runs: {outcome.done_before} already done, {len(outcome.ran)} run now, "
          f"{outcome.remaining} left")
    print(f"results: {out / 'results.csv'}")
    if outcome.remaining == 0:
        print(f"next: medseg report {out}")
    return 0


def _print_folds(resolved, out: Path) -> None:
    """With grid.folds > 1: each fold's test scans (from the split file, or as it will be drawn)."""
    from ..data.splits import full_split, load_split
    from ..experiments.grid import split_file_name

    k = resolved["grid"].get("folds", 1)
    if k == 1:
        return
    for label, cfg in resolved["datasets"].items():
        path = out / split_file_name(resolved, label)
        split = load_split(path, cfg["data"]["dataset"]) if path.is_file() else full_split(cfg["data"])
        source = path if path.is_file() else "to be drawn"
        print(f"{label}: {k}-fold cross-validation over {sum(len(f['test']) for f in split['folds'])} "
              f"scans ({source}); folds run: {resolved['grid']['run_folds']}")
        for f, fold in enumerate(split["folds"]):
            print(f"  fold {f}: test {', '.join(fold['test'])} | val {', '.join(fold['val'])} | "
                  f"{len(fold['train'])} train")


def dry_run(resolved, out: Path) -> int:
    from ..experiments.estimate import estimate_runs, format_seconds
    from ..experiments.grid import split_file_name
    from ..experiments.runner import plan_status

    from ..experiments.grid import comparable, expand, first_difference
    from ..experiments.runner import growth_conflict, load_experiment_file, plain_config

    old = load_experiment_file(out)
    diff = None if old is None else first_difference(comparable(old), comparable(plain_config(dict(resolved))))
    if diff is not None:
        conflict = growth_conflict(out, old, expand(resolved))
        print(f"note: {out} holds this experiment with a different config ('{diff[0]}' is {diff[1]!r} there, "
              f"{diff[2]!r} now): " + ("it grows: only the new runs will run" if conflict is None else
                                       f"{conflict}; running would be refused without --force"))
    _print_folds(resolved, out)
    status = plan_status(resolved, out)
    splits = {label: out / split_file_name(resolved, label) for label in resolved["datasets"]}
    seconds, note = estimate_runs([s.config for s, _ in status], splits)
    width = max(len(s.rel_dir) for s, _ in status)
    print(f"{'#':>4}  {'status':<7} {'run folder (under ' + str(out) + ')':<{width}}  {'seed':>5}  estimate")
    for i, ((spec, done), sec) in enumerate(zip(status, seconds), start=1):
        print(f"{i:>4}  {'done' if done else 'to do':<7} {spec.rel_dir:<{width}}  {spec.seed:>5}  "
              f"{'-' if done else '~' + format_seconds(sec)}")
    left = [sec for (_, done), sec in zip(status, seconds) if not done]
    n_done = len(status) - len(left)
    print(f"{len(status)} runs: {n_done} done, {len(left)} to do; estimated time for those: "
          f"~{format_seconds(sum(left))} ({note})")
    return 0
