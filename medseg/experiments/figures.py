"""Figures of the report, after the paper (Shi et al., ICASSP 2022): box plots of the
repeats per method (Fig. 1), the k ablation (Fig. 3), DICE against the fraction of
zeroed feature maps (Fig. 4, the co-adaptation test) and image / ground truth /
predictions side by side (Fig. 2).

Matplotlib is used through its object API with the Agg canvas (``Figure`` +
``FigureCanvasAgg``), never ``pyplot``, so no global backend is switched and nothing
needs a display. Every figure is written as PNG and SVG (atomically, via
:func:`medseg.io.atomic_write_from`).

Qualitative figure — the slice rule (stated in the report): for every test case of
the split, the slice with the largest ground-truth area on the native grid (ties:
the lowest slice index); of those, the ``n`` with the largest areas (ties: case id),
at most one per case. For BAGLS every case is one frame. Each method is shown by
the prediction of the best checkpoint (validation DICE) of its lowest repeat,
computed with :func:`medseg.data.preprocess.predict_slices` exactly as in
evaluation, on the native grid. Image = the network input slice (window applied)
resized to the native grid for display; ground truth and predictions are drawn as
red overlays. Several channels: the first is shown (values outside [0, 1], as a
z-scoring plan leaves them, stretched to the slice's 0.5–99.5 % range); several
labels: one colour per class (class 1 red, then :data:`LABEL_COLORS`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_write_from

FORMATS = ("png", "svg")
_BOX_COLOR = "#9ecae1"
_HD_COLOR = "#fdae6b"
_FAILED_COLOR = "#d62728"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``; return the paths."""
    stem = Path(stem)
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"Date": None} if fmt == "svg" else None
        atomic_write_from(path, lambda buffer, fmt=fmt, meta=meta: fig.savefig(
            buffer, format=fmt, bbox_inches="tight", metadata=meta))  # checked to the byte
        paths.append(path)
    return paths


def _points(ax, i: int, values: Sequence[float], failed: Sequence[bool] | None = None) -> None:
    """The repeats as dots over a box, spread evenly (deterministic jitter); ``failed``
    repeats (a run that did not converge) as red crosses."""
    n = len(values)
    xs = [i + (0.0 if n == 1 else -0.12 + 0.24 * j / (n - 1)) for j in range(n)]
    bad = list(failed) if failed is not None else [False] * n
    ok = [(x, v) for x, v, f in zip(xs, values, bad) if not f]
    if ok:
        ax.scatter(*zip(*ok), s=14, color="black", zorder=3, linewidths=0)
    marked = [(x, v) for x, v, f in zip(xs, values, bad) if f]
    if marked:
        ax.scatter(*zip(*marked), s=36, color=_FAILED_COLOR, marker="x", zorder=4, linewidths=1.5)


def _boxes(ax, labels: list[str], values: list[list[float]], highlight: Sequence[str] = (),
           failed: list[list[bool]] | None = None) -> None:
    flags = failed if failed is not None else [[False] * len(vs) for vs in values]
    kept = [[(v, f) for v, f in zip(vs, fs) if not math.isnan(v)] for vs, fs in zip(values, flags)]
    data = [[v for v, _ in k] for k in kept]
    positions = list(range(1, len(data) + 1))
    bp = ax.boxplot([d if d else [float("nan")] for d in data], positions=positions, widths=0.55,
                    patch_artist=True, showfliers=False, medianprops={"color": "black"})
    for box, label in zip(bp["boxes"], labels):
        box.set_facecolor(_HD_COLOR if label in highlight else _BOX_COLOR)
    for i, k in zip(positions, kept):
        _points(ax, i, [v for v, _ in k], [f for _, f in k])
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def boxplot_figure(panels: list[tuple], ylabel: str, title: str, stem: str | Path,
                   highlight: Sequence[str] = ("heuristic",), failed_note: str | None = None,
                   ncols: int | None = None) -> list[Path]:
    """One axis per panel (e.g. per model): a box of the per-repeat values of each method.

    A panel is ``(name, labels, values)`` or ``(name, labels, values, failed)`` with
    ``failed[i][j]`` true for a repeat that holds a run that did not converge: drawn
    as a red cross, explained by ``failed_note`` under the plot. ``ncols``: at most that
    many panels per row (e.g. one panel per label of a multi-organ set); None: one row.
    """
    n = len(panels)
    if ncols is None or n <= ncols:
        width = max(4.0, sum(0.55 * len(p[1]) + 1.2 for p in panels))
        fig = new_figure(width, 4.0)
        axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
        first_column = [axes[0]]
    else:
        nrows = -(-n // ncols)
        width = max(4.0, ncols * (0.55 * max(len(p[1]) for p in panels) + 1.2))
        fig = new_figure(width, 3.4 * nrows)
        grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        axes = list(grid.flat)
        for ax in axes[n:]:
            ax.set_visible(False)
        first_column = list(grid[:, 0])
    for ax, (name, labels, values, *rest) in zip(axes, panels):
        _boxes(ax, labels, values, highlight, rest[0] if rest else None)
        ax.set_title(name, fontsize=10)
    for ax in first_column:
        ax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=11)
    if failed_note:
        fig.supxlabel(failed_note, fontsize=8, color=_FAILED_COLOR)
    return save_figure(fig, stem)


def k_ablation_figure(ks: list[Any], dice: list[list[float]], iou: list[list[float]], title: str,
                      stem: str | Path) -> list[Path]:
    """Box plot over k (paper Fig. 3): DICE and IoU of the repeats for each k."""
    fig = new_figure(max(5.0, 1.1 * len(ks) + 2.5), 3.6)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    labels = [str(k) for k in ks]
    for ax, values, name in ((axes[0], dice, "DICE"), (axes[1], iou, "IoU")):
        _boxes(ax, labels, values)
        ax.set_xticklabels(labels, rotation=0, fontsize=9)
        ax.set_xlabel("k")
        ax.set_title(f"test {name} per repeat", fontsize=10)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, stem)


def coadapt_figure(series: Mapping[str, Mapping[str, tuple[list[float], list[float], list[float]]]],
                   title: str, stem: str | Path) -> list[Path]:
    """DICE against the fraction of zeroed feature maps (paper Fig. 4).

    ``series``: panel name (e.g. model) → method → (fractions, mean, std); the band
    is mean ± std over draws and repeats.
    """
    n = len(series)
    fig = new_figure(max(5.0, 4.6 * n), 3.8)
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    for ax, (panel, methods) in zip(axes, series.items()):
        for method, (fr, mean, std) in methods.items():
            fr, mean, std = (np.asarray(a, dtype=float) for a in (fr, mean, std))
            kw = {"linewidth": 2.2} if method == "heuristic" else {"linewidth": 1.3}
            line, = ax.plot(fr, mean, marker="o", markersize=3, label=method, **kw)
            ax.fill_between(fr, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("fraction of feature maps zeroed (input of the output layer)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test DICE (mean ± std, draws × repeats)", fontsize=8)
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, stem)


# --------------------------------------------------------------------------- qualitative


def select_slices(case_items, n: int) -> list[dict[str, Any]]:
    """The slice rule of the module docstring over ``case_items`` (DataModule case dicts)."""
    picks = []
    for item in case_items:
        label = np.asarray(item["native_label"])
        areas = (label > 0).reshape(label.shape[0], -1).sum(axis=1)  # foreground pixels, any label
        idx = int(np.argmax(areas))  # first maximum: lowest index on ties
        picks.append({"case_id": item["case_id"], "index": idx, "area": int(areas[idx]),
                      "image": item["image"][idx], "label": label[idx]})
    picks.sort(key=lambda p: (-p["area"], p["case_id"]))
    return picks[:n]


def _display_image(image, native_hw) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(image, dtype=torch.float32)[None]  # (1, C, H, W)
    if tuple(x.shape[-2:]) != tuple(native_hw):
        x = F.interpolate(x, size=tuple(int(v) for v in native_hw), mode="bilinear", align_corners=False)
    x = x[0]
    if x.shape[0] != 3:  # one channel, or several (CT phases, MR sequences): the first
        x = x[0]
        if float(x.min()) < -1e-3 or float(x.max()) > 1.001:  # z-scored by a plan: its 0.5-99.5 % range
            lo, hi = (float(v) for v in torch.quantile(x.flatten(), torch.tensor([0.005, 0.995])))
            x = (x - lo) / (hi - lo) if hi > lo else x - lo
        return x.clamp(0, 1).numpy()
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


#: overlay colour of class 1, 2, … (class 1 red as in the binary figures; cycled beyond)
LABEL_COLORS = ((1.0, 0.1, 0.1), (0.1, 0.45, 1.0), (0.1, 0.8, 0.2), (1.0, 0.85, 0.0), (0.8, 0.2, 0.9),
                (0.0, 0.85, 0.85), (1.0, 0.5, 0.0), (0.6, 0.4, 0.2))

#: their names, for the report's text
LABEL_COLOR_NAMES = ("red", "blue", "green", "yellow", "purple", "cyan", "orange", "brown")


def label_color(value: int) -> tuple[float, float, float]:
    return LABEL_COLORS[(int(value) - 1) % len(LABEL_COLORS)]


def _overlay(ax, img: np.ndarray, mask: np.ndarray | None) -> None:
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if mask is not None:
        rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
        rgba[mask > 0] = (1.0, 0.1, 0.1, 0.45)
        for value in np.unique(mask[mask > 1]):  # several labels: one colour per class
            rgba[mask == value] = (*label_color(value), 0.45)
        ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def qualitative_figure(picks: list[dict[str, Any]], predictions: Mapping[str, list[np.ndarray]],
                       title: str, stem: str | Path) -> list[Path]:
    """Rows = selected slices; columns = image, ground truth, each method's prediction."""
    cols = 2 + len(predictions)
    rows = len(picks)
    fig = new_figure(1.7 * cols, 1.8 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, pick in enumerate(picks):
        img = _display_image(pick["image"], pick["label"].shape)
        _overlay(axes[r][0], img, None)
        _overlay(axes[r][1], img, pick["label"])
        axes[r][0].set_ylabel(f"{pick['case_id']}\nslice {pick['index']}", fontsize=7)
        for c, (method, masks) in enumerate(predictions.items(), start=2):
            _overlay(axes[r][c], img, masks[r])
    titles = ["image", "ground truth", *predictions]
    for c, t in enumerate(titles):
        axes[0][c].set_title(t, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, stem)


def render_qualitative(exp_dir: Path, runs: Mapping[str, str], title: str, stem: str | Path,
                       n_slices: int = 4) -> tuple[list[Path], list[dict[str, Any]]]:
    """Predict the selected test slices with each method's run (method → run_dir) and plot.

    Returns the written files and the picks (case id, slice index, area) for the report.
    """
    import yaml

    from ..config import validate
    from ..data.datamodule import SegmentationDataModule
    from ..data.preprocess import predict_slices
    from ..data.splits import load_split
    from ..training.checkpoint import build_model_from_checkpoint

    first = exp_dir / next(iter(runs.values()))
    cfg = validate(yaml.safe_load((first / "config.yaml").read_text()))
    split = load_split(first / "split.json", cfg["data"]["dataset"])
    dm = SegmentationDataModule(cfg, split, progress=False)
    dm.prepare_data()
    picks = select_slices(dm.case_dataloader("test"), n_slices)
    predictions: dict[str, list[np.ndarray]] = {}
    for method, rel in runs.items():
        model, meta = build_model_from_checkpoint(exp_dir / rel / "checkpoints" / "best.ckpt")
        masks = []
        for p in picks:
            x = p["image"][None].float()
            masks.append(predict_slices(model, x, p["label"].shape, 1)[0].numpy())
        predictions[method] = masks
    files = qualitative_figure(picks, predictions, title, stem)
    return files, [{k: p[k] for k in ("case_id", "index", "area")} for p in picks]
