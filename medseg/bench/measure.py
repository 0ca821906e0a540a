"""Timing and memory measurement shared by the benchmark sections.

**Time** — :func:`paired_times` runs a reference and a candidate side by side in
one process: after a warm-up call of each, every repeat times both back to back,
alternating which goes first, so slow drifts of a shared (contended) CPU hit both
alike. Figures are medians; the ratio is the median of the per-repeat paired
ratios, which discards repeats where contention hit only one of the pair.

**Memory** — :func:`peak_extra_bytes` is the peak number of bytes that torch
allocates during one call, on top of what was allocated before it started (inputs,
upstream gradients and parameters are not counted; outputs and gradients created
by the call are). On CPU, neither ``tracemalloc`` (torch does not allocate through
Python's allocator) nor the process RSS (glibc keeps freed blocks resident and
reuses them, and the RSS includes Python itself) measures this. Instead the call
runs once under ``torch.profiler.profile(profile_memory=True)``: the profiler
records every allocation and free of torch's CPU allocator as a ``[memory]``
event with a signed byte count and a timestamp; the running sum of those events
in time order is the bytes held, and its maximum the peak. A free of a block
allocated before the call is not recorded (torch warns once) and so never lowers
the running sum — the measure errs towards more memory, not less. On CUDA the
allocator's own counters are used (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from typing import Callable

import torch


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Wall-clock seconds of one call of ``fn`` (device work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def paired_times(reference: Callable[[], object], candidate: Callable[[], object],
                 repeats: int, device: torch.device | str = "cpu", warmup: int = 1
                 ) -> dict[str, object]:
    """Time ``candidate`` against ``reference``, interleaved; medians and paired ratio.

    Returns ``{"reference_s", "candidate_s", "ratio", "reference_runs_s",
    "candidate_runs_s"}`` with medians in seconds and ``ratio`` the median of the
    per-repeat ratios candidate/reference.
    """
    repeats = max(1, int(repeats))
    for _ in range(max(0, warmup)):
        reference()
        candidate()
    ref_runs: list[float] = []
    cand_runs: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            ref_runs.append(time_call(reference, device))
            cand_runs.append(time_call(candidate, device))
        else:
            cand_runs.append(time_call(candidate, device))
            ref_runs.append(time_call(reference, device))
    ratios = [c / r for c, r in zip(cand_runs, ref_runs)]
    return {
        "reference_s": statistics.median(ref_runs),
        "candidate_s": statistics.median(cand_runs),
        "ratio": statistics.median(ratios),
        "reference_runs_s": ref_runs,
        "candidate_runs_s": cand_runs,
    }


def peak_extra_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int | None:
    """Peak bytes torch allocates during one call of ``fn`` beyond what was held before.

    See the module docstring for the method. ``None`` where the device offers no
    measurement.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device.type != "cpu":
        return None
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr():  # the profiler's C++ side logs start/stop lines on fd 2
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == _cpu_device_type()]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return int(peak)


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_device_type():
    from torch.autograd import DeviceType

    return DeviceType.CPU
