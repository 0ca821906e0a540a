"""``medseg drops``: what Heuristic Dropout drops in a trained run.

:func:`run_drops` loads a run's checkpoint, runs the network over every slice of a
split with only the Heuristic Dropout slots in training mode
(:class:`~medseg.regularizers.diagnostics.DropRecorder`: BatchNorm and the rest in
evaluation mode, no gradients, no weight change) and writes

* ``RUN/drops.csv`` — one row per slot, columns
  :data:`~medseg.regularizers.diagnostics.COLUMNS`;
* ``RUN/drops.png`` — per slot, the share of slices in which each channel was dropped
  (dark: dropped while constant, a no-op drop).

For ``--split test``/``train`` the files are ``drops_<split>.csv``/``.png`` (as
``medseg evaluate`` names its files). Both files are staged and renamed together; an
existing file is replaced only with ``force``.

:func:`drops_section` turns an experiment's ``drops.csv`` files into the short
Markdown section of ``medseg report``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import MedsegError
from ..io import atomic_path, csv_text, read_csv_rows
from ..regularizers.diagnostics import COLUMNS, DropRecorder

SPLITS = ("val", "test", "train")


def drops_paths(run_dir: Path, split: str = "val") -> tuple[Path, Path]:
    """``(drops.csv, drops.png)`` of ``split`` in ``run_dir`` (suffixed except for val)."""
    stem = "drops" if split == "val" else f"drops_{split}"
    return run_dir / f"{stem}.csv", run_dir / f"{stem}.png"


def _run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    from ..config import validate

    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise MedsegError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = validate(yaml.safe_load(cfg_file.read_text()))
    name = cfg["regularizer"]["name"]
    if name != "heuristic":
        raise MedsegError(f"{cfg_file}: the run uses regularizer '{name}', not heuristic: "
                          "nothing to show (medseg drops needs a Heuristic Dropout run)")
    return cfg


def _load_network(run_dir: Path, cfg: dict[str, Any], checkpoint: str) -> torch.nn.Module:
    from ..training.checkpoint import load_checkpoint
    from ..training.module import SegmentationModule
    from ..training.run import resolve_checkpoint

    path = resolve_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(path)  # weights_only=True
    module = SegmentationModule(cfg)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise MedsegError(f"{path}: incompatible with the run's model ({str(exc).splitlines()[0]})") from None
    return module.model


def _split_slices(run_dir: Path, cfg: dict[str, Any], split: str, progress: bool) -> Iterable[torch.Tensor]:
    """The split's slices, batch by batch (``eval.batch_size``), as float32 tensors."""
    from ..data.datamodule import SegmentationDataModule
    from ..data.splits import load_split

    cases = load_split(run_dir / "split.json", cfg["data"]["dataset"])
    if not cases.get(split):
        raise MedsegError(f"{run_dir / 'split.json'}: the split '{split}' has no cases")
    dm = SegmentationDataModule(cfg, cases, progress=progress)
    dm.prepare_data()
    batch = cfg["eval"]["batch_size"]
    for case_id in cases[split]:
        image = torch.from_numpy(dm.cache.load(case_id)["image"].astype(np.float32))
        yield from image.split(batch)


def record_drops(run_dir: str | Path, split: str = "val", checkpoint: str = "best",
                 progress: bool = True) -> DropRecorder:
    """Run the run's network over ``split``; the recorder holds the statistics."""
    from tqdm.auto import tqdm

    from ..training.run import _setup_process

    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise MedsegError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    cfg = _run_config(run_dir)
    _setup_process(cfg)
    network = _load_network(run_dir, cfg, checkpoint)
    with DropRecorder(network) as recorder:
        for x in tqdm(_split_slices(run_dir, cfg, split, progress), desc="drops", unit="batch",
                      disable=not progress):
            network(x)
    return recorder


def run_drops(run_dir: str | Path, split: str = "val", checkpoint: str = "best", *,
              force: bool = False, progress: bool = True) -> Path:
    """Write ``drops.csv`` and ``drops.png`` of ``run_dir`` (see module doc); return the CSV path."""
    run_dir = Path(run_dir)
    csv_path, png_path = drops_paths(run_dir, split)
    for path in (csv_path, png_path):
        if path.exists() and not force:
            raise MedsegError(f"{path}: exists (use --force to replace it)")
    _run_config(run_dir)  # a non-Heuristic run fails before any work
    recorder = record_drops(run_dir, split, checkpoint, progress)
    figure = drops_figure(recorder.frequencies(), f"{run_dir.name}: channels dropped ({split})")
    with atomic_path(png_path) as tmp_png, atomic_path(csv_path) as tmp_csv:
        figure.savefig(tmp_png, format="png", bbox_inches="tight")
        tmp_csv.write_text(csv_text(COLUMNS, recorder.rows()))
    return csv_path


def drops_figure(frequencies: dict[str, tuple[torch.Tensor, torch.Tensor]], title: str):
    """One panel per slot: each channel's selection frequency (dark part: constant channel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(frequencies)
    fig = Figure(figsize=(8, 1.3 * n + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, (slot, (freq, dead)) in zip(axes, frequencies.items()):
        idx = np.arange(freq.numel())
        ax.bar(idx, (freq - dead).numpy(), width=1.0, color="#fdae6b", label="dropped")
        ax.bar(idx, dead.numpy(), bottom=(freq - dead).numpy(), width=1.0, color="#7f2704",
               label="dropped while constant (no-op)")
        ax.set_xlim(-0.5, freq.numel() - 0.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel(slot, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("channel")
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- report section


def read_drops(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``drops.csv`` (numbers typed)."""
    return [{k: (v if k in ("slot", "spatial") else int(v) if k == "channels" else float(v))
             for k, v in r.items()} for r in read_csv_rows(path, COLUMNS, "drops")]


def drops_section(exp_dir: Path) -> list[str]:
    """Markdown lines "What Heuristic Dropout dropped" for an experiment folder: per
    method (Heuristic Dropout parameters) and slot, means over the runs that have a
    ``drops.csv`` (written by ``medseg drops``). Empty if no run has one."""
    from .grid import method_label
    from .results import read_results

    exp_dir = Path(exp_dir)
    runs = {r["run_dir"]: r for r in read_results(exp_dir / "results.csv") if r["regularizer"] == "heuristic"}
    by_method: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run_dir, r in runs.items():
        path = drops_paths(exp_dir / run_dir)[0]
        if path.is_file():
            for row in read_drops(path):
                by_method[method_label(r["regularizer"], r["params"])][row["slot"]].append(row)
    if not by_method:
        return []
    lines = ["## What Heuristic Dropout dropped", "",
             "Per slot, on the validation slices (`medseg drops`, means over runs): channels "
             "dropped per slice, the share of them that were constant (variance ≤ eps: "
             "replacing an all-zero channel changes nothing) or of variance < 1e-4, and how "
             "varied the selection is (0 = always the same channels, 1 = all equally often).", ""]
    for method, slots in sorted(by_method.items()):
        lines += [f"**{method}**", "",
                  "| slot | channels | dropped / slice | constant | variance < 1e-4 | selection entropy | runs |",
                  "|---|---|---|---|---|---|---|"]
        for slot, rows in slots.items():
            m = {k: _mean(r[k] for r in rows) for k in
                 ("dropped_per_sample", "dead_fraction", "low_variance_fraction", "selection_entropy")}
            lines.append(f"| `{slot}` | {rows[0]['channels']} | {m['dropped_per_sample']:.2f} | "
                         f"{_pct(m['dead_fraction'])} | {_pct(m['low_variance_fraction'])} | "
                         f"{m['selection_entropy']:.2f} | {len(rows)} |")
        lines.append("")
    return lines


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.0f} %"
