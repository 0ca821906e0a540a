"""Benchmark section ``regularizers``: each regularizer against a 3×3 conv.

For every key of :func:`medseg.regularizers.available` (or ``--only``), in training
mode, on the feature-map shapes (B, C, H, W) = (16, 64, 128, 128) and
(16, 256, 32, 32):

* **time** — forward+backward of the regularizer relative to forward+backward of a
  3×3 conv C→C with bias (``nn.Conv2d(C, C, 3, padding=1)``) on the same input,
  gradients taken w.r.t. the input (and the conv's weight and bias), measured side
  by side (:func:`medseg.bench.measure.paired_times`: median of the paired ratios);
* **memory** — peak extra bytes of one forward+backward
  (:func:`medseg.bench.measure.peak_extra_bytes`), reported as a multiple of the
  input tensor's size.

The input is a post-activation feature map, ``relu(N(0, 1))`` — what the slot sees —
and the upstream gradient ``N(0, 1)``.

Placements other than ``"slot"`` are measured where they act:

* ``"residual"`` (Stochastic Depth) computes ``reg(h, conv)`` — the conv *is* its
  branch — so the figure reported is its **overhead over that conv**,
  ``(t(reg(h, conv)) − t(conv(h))) / t(conv(h))`` per pair, median;
* ``"input"`` (Cutout, input dropout) acts on the network input: it is measured on
  the image tensor (B, 1, H, W), forward only (the image carries no gradient),
  against the network's first conv on that image, a 3×3 conv 1→C with bias,
  forward+backward; its memory is a multiple of the image's size.

Targets (issue 3), checked on (16, 64, 128, 128) only: Heuristic Dropout ≤ 0.5×
the conv and ≤ 3× the input in extra peak memory; every other regularizer ≤ 1.0×
the conv. ``--quick`` uses tiny shapes (2, 8, 16, 16) and (2, 16, 8, 8) and checks
no target.

3D (issue 13): one more row, Heuristic Dropout forward+backward on the 3D feature map
(B, C, D, H, W) = (2, 32, 32, 64, 64) against a 3×3×3 conv 32→32 with bias
(``nn.Conv3d``), target ≤ 0.5× (``--quick``: (1, 4, 4, 8, 8), no target).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import BenchOptions, Row
from .measure import paired_times, peak_extra_bytes
from .report import fmt, render, result_text

SHAPES = [(16, 64, 128, 128), (16, 256, 32, 32)]
QUICK_SHAPES = [(2, 8, 16, 16), (2, 16, 8, 8)]
#: the shape on which the targets are checked
TARGET_SHAPE = SHAPES[0]
#: the 3D row: Heuristic Dropout on (B, C, D, H, W) against a 3×3×3 conv
SHAPE_3D = (2, 32, 32, 64, 64)
QUICK_SHAPE_3D = (1, 4, 4, 8, 8)
HEURISTIC_3D_TIME_TARGET = 0.5
HEURISTIC_TIME_TARGET = 0.5
HEURISTIC_MEMORY_TARGET = 3.0
OTHER_TIME_TARGET = 1.0
DEFAULT_REPEATS = 3


def select_keys(only: list[str] | None) -> list[str]:
    """The regularizer keys to run: ``only`` (validated) or all, in catalogue order."""
    from ..errors import ConfigError
    from ..regularizers import available

    keys = available()
    if not only:
        return keys
    unknown = [k for k in only if k not in keys]
    if unknown:
        raise ConfigError(f"bench --only: unknown regularizer(s) {', '.join(unknown)} "
                          f"(available: {', '.join(keys)})")
    return [k for k in keys if k in only]


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _grad(out: torch.Tensor, inputs: list[torch.Tensor], grad_out: torch.Tensor):
    return torch.autograd.grad(out, inputs, grad_out, allow_unused=True)


def _cases(reg: nn.Module, shape: tuple[int, ...], device: torch.device, seed: int
           ) -> dict[str, Any]:
    """Reference and candidate callables for one regularizer on one shape (2D or 3D)."""
    B, C, *spatial = shape
    H, W = spatial[-2:]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    placement = getattr(reg, "placement", "slot")
    if placement == "input":
        image = torch.randn(B, 1, H, W, generator=gen).to(device)
        conv = nn.Conv2d(1, C, 3, padding=1).to(device)
        grad_out = torch.randn(B, C, H, W, generator=gen).to(device)
        params = [conv.weight, conv.bias]
        return {
            "reference": lambda: _grad(conv(image), params, grad_out),
            "candidate": lambda: reg(image),
            "input_bytes": image.numel() * image.element_size(),
            "input_shape": [B, 1, H, W],
            "reference_text": f"conv3x3 1→{C} fwd+bwd on the image",
            "note": "input-level: on the image (B,1,H,W), forward only",
            "overhead": False,
        }
    x = torch.randn(*shape, generator=gen).relu_().to(device).requires_grad_()
    grad_out = torch.randn(*shape, generator=gen).to(device)
    conv = (nn.Conv2d if len(spatial) == 2 else nn.Conv3d)(C, C, 3, padding=1).to(device)
    params = [x, conv.weight, conv.bias]
    reference = lambda: _grad(conv(x), params, grad_out)  # noqa: E731
    kernel = "x".join("3" * len(spatial))
    common = {"reference": reference, "input_bytes": x.numel() * x.element_size(),
              "input_shape": list(shape), "reference_text": f"conv{kernel} {C}→{C} fwd+bwd"}
    if placement == "residual":
        return {**common, "candidate": lambda: _grad(reg(x, conv), params, grad_out),
                "note": "residual: reg(h, conv); value = overhead over the conv", "overhead": True}
    return {**common, "candidate": lambda: _grad(reg(x), [x], grad_out), "note": "",
            "overhead": False}


def _targets(key: str, shape: tuple[int, ...], quick: bool) -> dict[str, float]:
    if not quick and key == "heuristic" and tuple(shape) == SHAPE_3D:
        return {"time": HEURISTIC_3D_TIME_TARGET}
    if quick or tuple(shape) != TARGET_SHAPE:
        return {}
    if key == "heuristic":
        return {"time": HEURISTIC_TIME_TARGET, "memory": HEURISTIC_MEMORY_TARGET}
    return {"time": OTHER_TIME_TARGET}


def bench_one(key: str, shape: tuple[int, ...], repeats: int, device: str = "cpu",
              quick: bool = False, seed: int = 0, memo: dict | None = None) -> Row:
    """Measure regularizer ``key`` on ``shape``; one row."""
    from ..regularizers import build

    dev = torch.device(device)
    torch.manual_seed(seed)
    reg = build(key).to(dev).train()
    case = _cases(reg, shape, dev, seed)
    timing = paired_times(case["reference"], case["candidate"], repeats, dev)
    value = _time_value(case, timing)
    peak, ref_peak = _peaks(case, shape, dev, {} if memo is None else memo)
    mem_ratio = None if peak is None else peak / case["input_bytes"]
    ref_mem_ratio = None if ref_peak is None else ref_peak / case["input_bytes"]
    checks = _checks(_targets(key, shape, quick), value, mem_ratio)
    verdicts = [c["passed"] for c in checks.values()]
    return {
        "section": "regularizers",
        "name": f"{key} @ {_shape_text(shape)}",
        "key": key,
        "placement": getattr(reg, "placement", "slot"),
        "shape": list(shape),
        "input_shape": case["input_shape"],
        "value": value,
        "unit": "× conv" if not case["overhead"] else "× conv (overhead)",
        "target": "; ".join(f"{m} {c['target']}" for m, c in checks.items()) or None,
        "passed": None if not verdicts or None in verdicts else all(verdicts),
        "checks": checks,
        "time_s": timing["candidate_s"],
        "reference": case["reference_text"],
        "reference_time_s": timing["reference_s"],
        "time_runs_s": timing["candidate_runs_s"],
        "reference_runs_s": timing["reference_runs_s"],
        "repeats": len(timing["candidate_runs_s"]),
        "input_bytes": case["input_bytes"],
        "peak_extra_bytes": peak,
        "peak_extra_x_input": mem_ratio,
        "reference_peak_extra_x_input": ref_mem_ratio,
        "note": case["note"],
        "device": str(dev),
        "quick": quick,
    }


def _time_value(case: dict[str, Any], timing: dict[str, Any]) -> float:
    """The row's value: the median paired time ratio, or for a residual regularizer the
    median paired overhead over its conv branch."""
    if not case["overhead"]:
        return timing["ratio"]
    pairs = zip(timing["candidate_runs_s"], timing["reference_runs_s"])
    return _median(sorted((c - r) / r for c, r in pairs))


def _peaks(case: dict[str, Any], shape: tuple[int, ...], dev: torch.device, memo: dict
           ) -> tuple[int | None, int | None]:
    """Peak extra bytes of the candidate and of the reference conv; the reference depends only
    on the shape and placement, so it is measured once per ``memo``."""
    peak = peak_extra_bytes(case["candidate"], dev)
    ref_key = (tuple(shape), case["reference_text"], str(dev))
    if ref_key not in memo:
        memo[ref_key] = peak_extra_bytes(case["reference"], dev)
    return peak, memo[ref_key]


def _checks(targets: dict[str, float], value: float, mem_ratio: float | None) -> dict[str, Any]:
    """The judged targets of one row: ``{"time"/"memory": {target, value, passed}}``."""
    checks: dict[str, Any] = {}
    if "time" in targets:
        checks["time"] = {"target": f"≤ {targets['time']}", "value": value,
                          "passed": bool(value <= targets["time"])}
    if "memory" in targets:
        checks["memory"] = {"target": f"≤ {targets['memory']}", "value": mem_ratio,
                            "passed": None if mem_ratio is None
                            else bool(mem_ratio <= targets["memory"])}
    return checks


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def bench_regularizers(options: BenchOptions) -> list[Row]:
    """The ``regularizers`` section: one row per (regularizer, shape)."""
    keys = select_keys(options.only)
    shapes = QUICK_SHAPES if options.quick else SHAPES
    repeats = options.repeats_or(DEFAULT_REPEATS)
    rows: list[Row] = []
    memo: dict = {}
    for shape in shapes:
        for key in keys:
            options.report(f"regularizers: {key} @ {_shape_text(shape)}")
            rows.append(bench_one(key, shape, repeats, options.device, options.quick, memo=memo))
    if "heuristic" in keys:
        shape = QUICK_SHAPE_3D if options.quick else SHAPE_3D
        options.report(f"regularizers: heuristic @ {_shape_text(shape)} (3D)")
        rows.append(bench_one("heuristic", shape, repeats, options.device, options.quick, memo=memo))
    return rows


def format_table(rows: list[Row]) -> str:
    lines = []
    for r in rows:
        t = r["checks"].get("time", {})
        m = r["checks"].get("memory", {})
        lines.append([
            r["key"], r["placement"], _shape_text(r["shape"]),
            f"{r['time_s'] * 1e3:.1f}", f"{r['reference_time_s'] * 1e3:.1f}",
            fmt(r["value"]), t.get("target", "—"), result_text(t.get("passed")) if t else "—",
            fmt(r["peak_extra_x_input"], 2), m.get("target", "—"),
            result_text(m.get("passed")) if m else "—", r["note"],
        ])
    return render(["key", "placement", "shape", "ms", "conv ms", "× conv", "target", "result",
                   "mem × input", "target", "result", "note"], lines)
