"""The co-adaptation test (paper Fig. 4; Shi et al., ICASSP 2022).

A network whose output layer relies on a few co-adapted feature maps loses much
accuracy when some of them disappear; a regularizer that breaks co-adaptation
should make the drop smaller. For every trained run:

* a forward pre-hook on ``model.head`` (the final 1×1 convolution) multiplies the
  C feature maps entering it by a 0/1 channel mask: ``n = round(fraction · C)``
  channels are zeroed (Python ``round``, halves to even), the rest pass unchanged
  (no rescaling);
* which channels: for draw ``d`` one random permutation of the C channels is drawn
  from ``numpy.random.default_rng(SeedSequence([seed, d]))`` (``--seed``, default 0)
  and the first ``n`` are zeroed — the same channels for every slice and case of the
  evaluation (the network with those maps removed), nested across fractions
  (the maps zeroed at 0.2 are among those zeroed at 0.4), and the same indices for
  every run, so the curves differ by the models only;
* the test split is scored exactly as ``medseg evaluate`` does it (the run's
  ``config.yaml``, ``split.json``, best checkpoint, DataModule case loader,
  Lightning ``trainer.test`` and the per-case metrics), so fraction 0 — no hook —
  reproduces the run's own ``metrics.json`` DICE exactly. Evaluations whose mask
  is identical (e.g. n = 0 for every draw) are computed once and reused.

Output: ``coadapt.csv`` (:data:`COLUMNS`; ``dice``/``iou`` = mean over the test
cases; with several labels each case's value is its mean over the labels, the
headline of ``metrics.json``, so fraction 0 reproduces its ``dice_mean``) and ``coadapt.png``/``.svg``: mean test DICE against the fraction per
regularizer, the band = ± std over draws and repeats.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import MedsegError
from ..io import atomic_write_text, csv_text, read_csv_rows
from .grid import method_label

COLUMNS = ["run", "dataset", "model", "regularizer", "params", "repeat", "seed", "fraction", "draw",
           "n_dropped", "channels", "dice", "iou"]
DEFAULT_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(10))


@dataclass
class RunInfo:
    path: Path           # the run folder
    run: str             # its name in the CSV (relative to the experiment folder if any)
    dataset: str
    model: str
    regularizer: str
    params: str          # sorted-key JSON, as in results.csv
    repeat: int | None
    seed: int


def parse_fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MedsegError(f"--fractions must be comma-separated numbers, got '{text}'") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise MedsegError(f"--fractions must be numbers in [0, 1], got '{text}'")
    return sorted(set(values))


def channel_order(channels: int, seed: int, draw: int) -> np.ndarray:
    """The random channel order of one draw (the first n are zeroed)."""
    return np.random.default_rng(np.random.SeedSequence([seed, draw])).permutation(channels)


def n_dropped(fraction: float, channels: int) -> int:
    return int(round(fraction * channels))


class ZeroChannels:
    """Forward pre-hook: multiply the input of the hooked module by a 0/1 channel mask."""

    def __init__(self, channels: int, dropped: Sequence[int]):
        self.mask = np.ones(channels, dtype=np.float32)
        self.mask[list(dropped)] = 0.0

    def __call__(self, module, args):
        import torch

        x = args[0]
        mask = torch.as_tensor(self.mask, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x * mask, *args[1:])


# --------------------------------------------------------------------------- finding runs


def _run_info_from_config(path: Path, name: str) -> RunInfo:
    cfg_file = path / "config.yaml"
    if not cfg_file.is_file():
        raise MedsegError(f"{path}: not a run folder (no config.yaml)")
    from ..training.run import read_run_config

    cfg = read_run_config(path)  # one-line errors naming config.yaml; paths against the run folder
    params = {k: v for k, v in cfg["regularizer"].items() if k != "name"}
    m = re.fullmatch(r"repeat(\d+)", path.name)
    return RunInfo(path, name, cfg["data"]["dataset"], cfg["model"]["name"], cfg["regularizer"]["name"],
                   json.dumps(params, sort_keys=True), int(m.group(1)) if m else None, cfg["seed"])


def is_experiment_dir(path: Path) -> bool:
    return (path / "results.csv").is_file() and (path / "experiment.yaml").is_file()


def discover_runs(paths: Iterable[str | Path]) -> list[RunInfo]:
    """Run folders, or experiment folders (then all their finished runs, from results.csv)."""
    from .results import read_results

    runs: list[RunInfo] = []
    for p in map(Path, paths):
        if is_experiment_dir(p):
            seen = {}
            for r in read_results(p / "results.csv"):
                seen.setdefault(r["run_dir"], r)
            for rel, r in seen.items():
                runs.append(RunInfo(p / rel, rel, r["dataset"], r["model"], r["regularizer"], r["params"],
                                    r["repeat"], r["seed"]))
        elif (p / "config.yaml").is_file():
            runs.append(_run_info_from_config(p, str(p)))
        else:
            raise MedsegError(f"{p}: neither a run folder (config.yaml) nor an experiment folder "
                              "(experiment.yaml + results.csv)")
    if not runs:
        raise MedsegError("no finished runs to test")
    return runs


# --------------------------------------------------------------------------- evaluating


class RunEvaluator:
    """Scores one run's best checkpoint on its test split, the way evaluate_run does."""

    def __init__(self, run_dir: Path):
        from ..data.datamodule import SegmentationDataModule
        from ..data.splits import load_split
        from ..training.checkpoint import load_checkpoint
        from ..training.module import SegmentationModule
        from ..training.run import _setup_process, make_trainer

        from ..training.run import read_run_config

        cfg = read_run_config(run_dir)
        split = load_split(run_dir / "split.json", cfg["data"]["dataset"])
        ckpt_path = run_dir / "checkpoints" / "best.ckpt"
        ckpt = load_checkpoint(ckpt_path)
        _setup_process(cfg)
        self.trainer = make_trainer(cfg, None, progress=False, for_eval=True)
        self.module = SegmentationModule(cfg)
        try:
            self.module.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            raise MedsegError(f"{ckpt_path}: incompatible with the run's model "
                              f"({str(exc).splitlines()[0]})") from None
        dm = SegmentationDataModule(cfg, split, progress=False)
        dm.prepare_data()
        self.loader = dm.case_dataloader("test")
        self.channels = int(self.module.model.head.in_channels)

    def score(self, dropped: Sequence[int] = ()) -> dict[str, Any]:
        handle = None
        if len(dropped):
            handle = self.module.model.head.register_forward_pre_hook(ZeroChannels(self.channels, dropped))
        try:
            self.trainer.test(self.module, dataloaders=self.loader, verbose=False)
        finally:
            if handle is not None:
                handle.remove()
        return dict(self.module.test_summary)


def coadapt_run(info: RunInfo, fractions: Sequence[float], draws: int, seed: int = 0) -> list[dict[str, Any]]:
    """The CSV rows of one run: every fraction × draw."""
    ev = RunEvaluator(info.path)
    cache: dict[tuple[int, ...], dict[str, Any]] = {}
    rows = []
    for draw in range(draws):
        order = channel_order(ev.channels, seed, draw)
        for fraction in fractions:
            n = n_dropped(fraction, ev.channels)
            dropped = tuple(sorted(int(c) for c in order[:n]))
            if dropped not in cache:
                cache[dropped] = ev.score(dropped)
            s = cache[dropped]
            rows.append({"run": info.run, "dataset": info.dataset, "model": info.model,
                         "regularizer": info.regularizer, "params": info.params,
                         "repeat": "" if info.repeat is None else info.repeat, "seed": info.seed,
                         "fraction": fraction, "draw": draw, "n_dropped": n, "channels": ev.channels,
                         "dice": s["dice_mean"], "iou": s["iou_mean"]})
    return rows



def coadapt_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    return csv_text(COLUMNS, rows)


def read_coadapt(path: str | Path) -> list[dict[str, Any]]:
    return [{**r, "repeat": int(r["repeat"]) if r["repeat"] else None, "seed": int(r["seed"]),
             "fraction": float(r["fraction"]), "draw": int(r["draw"]), "n_dropped": int(r["n_dropped"]),
             "channels": int(r["channels"]), "dice": float(r["dice"]), "iou": float(r["iou"])}
            for r in read_csv_rows(path, COLUMNS, "co-adaptation")]


def series_by_panel(rows: list[Mapping[str, Any]]):
    """panel (model, or dataset/model) → method → (fractions, mean DICE, std DICE)."""
    multi = len({r["dataset"] for r in rows}) > 1
    acc: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        panel = f"{r['dataset']} / {r['model']}" if multi else r["model"]
        acc[panel][method_label(r["regularizer"], r["params"])][r["fraction"]].append(r["dice"])
    out = {}
    for panel in sorted(acc):
        methods = {}
        for method, by_f in acc[panel].items():
            fr = sorted(by_f)
            vals = [[v for v in by_f[f] if not math.isnan(v)] for f in fr]
            methods[method] = (fr, [float(np.mean(v)) if v else float("nan") for v in vals],
                               [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals])
        out[panel] = methods
    return out


def run_coadapt(paths: Sequence[str | Path], *, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                draws: int = 3, seed: int = 0, out: str | Path | None = None, force: bool = False,
                progress: bool = True) -> Path:
    """Test every run, write ``coadapt.csv`` and the plot into ``out``; return the CSV path."""
    from tqdm.auto import tqdm

    from . import figures

    if draws < 1:
        raise MedsegError("--draws must be >= 1")
    paths = [Path(p) for p in paths]
    if out is None:
        if len(paths) == 1 and is_experiment_dir(paths[0]):
            out = paths[0] / "coadapt"
        else:
            raise MedsegError("--out is required unless a single experiment folder is given")
    out = Path(out)
    csv_path = out / "coadapt.csv"
    if csv_path.exists() and not force:
        raise MedsegError(f"{csv_path}: exists (use --force to replace it)")
    runs = discover_runs(paths)
    rows: list[dict[str, Any]] = []
    for info in tqdm(runs, desc="co-adaptation", unit="run", disable=not progress):
        rows += coadapt_run(info, list(fractions), draws, seed)
    out.mkdir(parents=True, exist_ok=True)
    figures.coadapt_figure(series_by_panel(rows), "Co-adaptation test: DICE vs fraction of feature "
                           "maps zeroed", out / "coadapt")
    atomic_write_text(csv_path, coadapt_csv(rows))
    return csv_path
