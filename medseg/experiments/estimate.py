"""A rough wall-time estimate per run for ``medseg experiment --dry-run``.

It is an *estimate*, stated as such wherever it is shown:

* per (dataset, architecture, width, depth, batch size) a training step
  (forward + backward + Adam) is timed (the fastest of three, after a warm-up) on this machine — on the GPU if one is
  available and the config allows it, else on the CPU — with the regularizer off,
  on random input of at most 128×128 pixels, with the run's ``train.num_threads``
  (so the estimate reflects this machine's load at that moment); the time per slice is scaled
  linearly with the pixel count to the configured slice size;
* an evaluation slice (forward only) is taken to cost :data:`EVAL_FRACTION` of a
  training slice;
* slices per epoch come from the split (the grid's ``split.json`` if drawn, else
  drawn in memory; the run's fold and ``data.train_size`` subset): Pancreas-CT scans are counted by their DICOM files / NIfTI
  header; if the data is not there, :data:`PANCREAS_SLICES_PER_SCAN` per scan
  (TCIA Pancreas-CT scans have 181–466 slices); BAGLS is one slice per frame;
* ``run = epochs × (train_slices × t_train + val_slices × t_eval / check_val_every_n_epoch)
  + test_slices × t_eval + OVERHEAD_S``.

Regularizer overhead, data-loading stalls and the one-off slice cache build are
not included.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

PANCREAS_SLICES_PER_SCAN = 240
EVAL_FRACTION = 1.0 / 3.0
OVERHEAD_S = 5.0
BAGLS_TEST_FRAMES = 3500  # the BAGLS test set, used when the data is not present
_MAX_SIDE = 128


def _count_slices(image: str, dataset: str) -> int:
    if dataset == "bagls":
        return 1
    p = Path(image)
    if p.is_dir():
        n = sum(1 for f in p.rglob("*") if f.is_file() and f.suffix.lower() in (".dcm", ""))
        return n or PANCREAS_SLICES_PER_SCAN
    try:
        import nibabel as nib

        shape = nib.load(str(p)).shape
        return int(shape[2]) if len(shape) >= 3 else 1
    except Exception:
        return PANCREAS_SLICES_PER_SCAN


def slice_counts(cfg: Mapping[str, Any], split_path: Path | None = None) -> tuple[dict[str, int], str]:
    """Slices in train/val/test for a config's dataset and how they were counted."""
    from ..data.splits import load_split, make_split, narrow_split

    data = cfg["data"]
    try:
        if split_path is not None and split_path.is_file():
            split = load_split(split_path, data["dataset"])
        else:
            split = make_split(data)
    except Exception:
        if data["dataset"] == "pancreas":
            n = dict(zip(("train", "val", "test"), data["split"]))
            n["train"] = data.get("train_size") or n["train"]
            return ({k: v * PANCREAS_SLICES_PER_SCAN for k, v in n.items()},
                    f"data not found: {PANCREAS_SLICES_PER_SCAN} slices per scan assumed")
        return ({"train": data.get("train_size") or data["train_frames"], "val": data["val_frames"],
                 "test": data["test_frames"] or BAGLS_TEST_FRAMES},
                "data not found: frame counts from the config")
    split = narrow_split(split, data)  # the run's fold and training subset
    counts = {name: sum(_count_slices(split["cases"][c]["image"], data["dataset"]) for c in split[name])
              for name in ("train", "val", "test")}
    return counts, "slices counted from the split's files"


def _device(cfg: Mapping[str, Any]):
    import torch

    if cfg["train"]["accelerator"] in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def time_train_step(cfg: Mapping[str, Any]) -> tuple[float, str]:
    """Seconds per training slice at the configured size (timed at ≤128×128, scaled)."""
    import torch

    m, data = cfg["model"], cfg["data"]
    step = 2 ** m["depth"]
    h, w = (max(step, min(int(s), _MAX_SIDE) // step * step) for s in data["size"])
    batch = max(1, min(int(cfg["train"]["batch_size"]), 4))
    device = _device(cfg)
    threads = torch.get_num_threads()
    if cfg["train"]["num_threads"]:
        torch.set_num_threads(cfg["train"]["num_threads"])  # as the run will
    try:
        return _time_step(cfg, device, h, w, batch)
    finally:
        torch.set_num_threads(threads)


def _time_step(cfg: Mapping[str, Any], device, h: int, w: int, batch: int) -> tuple[float, str]:
    import torch

    from ..models import build
    from ..training.checkpoint import _model_options, in_channels, out_channels

    m, data = cfg["model"], cfg["data"]
    torch.manual_seed(0)
    model = build(m["name"], in_channels(cfg), out_channels(cfg), base_channels=m["base_channels"], depth=m["depth"],
                  norm=m["norm"], regularizer=None, **_model_options(m)).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, in_channels(cfg), h, w, device=device)
    y = torch.randint(0, 2, (batch, h, w), device=device)

    def one_step() -> None:
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one_step()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(3):  # the fastest of three: the least disturbed by other load
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        one_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_slice = min(times) / batch
    scale = (int(data["size"][0]) * int(data["size"][1])) / (h * w)
    return per_slice * scale, device.type


def estimate_runs(configs: list[Mapping[str, Any]], split_paths: Mapping[str, Path] | None = None
                  ) -> tuple[list[float], str]:
    """Estimated seconds for each config, and a one-line note on how."""
    step_cache: dict[tuple, tuple[float, str]] = {}
    count_cache: dict[tuple, tuple[dict[str, int], str]] = {}
    out, devices, how = [], set(), set()
    for cfg in configs:
        m, data, t = cfg["model"], cfg["data"], cfg["train"]
        key = (data["dataset"], m["name"], m["base_channels"], m["depth"], m["norm"],
               m["deep_supervision"], m["cat_channels"], tuple(data["size"]), data["channels"],
               t["batch_size"], t["accelerator"])
        if key not in step_cache:
            step_cache[key] = time_train_step(cfg)
        t_train, dev = step_cache[key]
        devices.add(dev)
        label = (data["dataset"], data.get("fold", 0), data.get("train_size"))
        if label not in count_cache:
            path = None if split_paths is None else split_paths.get(data["dataset"])
            count_cache[label] = slice_counts(cfg, path)
        counts, note = count_cache[label]
        how.add(note)
        n_train = t.get("samples_per_epoch") or counts["train"]
        limit = t["limit_train_batches"]
        if isinstance(limit, int):
            n_train = min(n_train, limit * t["batch_size"])
        elif isinstance(limit, float):
            n_train = int(math.ceil(n_train * limit))
        t_eval = t_train * EVAL_FRACTION
        per_epoch = n_train * t_train + counts["val"] * t_eval / t["check_val_every_n_epoch"]
        out.append(t["epochs"] * per_epoch + counts["test"] * t_eval + OVERHEAD_S)
    note = (f"estimate from timed training steps on this machine's {'/'.join(sorted(devices))}; "
            + "; ".join(sorted(how)))
    return out, note


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
