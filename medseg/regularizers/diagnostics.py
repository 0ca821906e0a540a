"""What Heuristic Dropout drops: per-slot statistics of a network's selections.

A constant channel (e.g. all zero after the ReLU) has variance 0 and so the highest
possible score, ``k/eps``; replacing an all-zero channel by its Laplace (or by zeros)
changes nothing. These statistics show how much of the budget goes to such no-op
drops, slot by slot::

    from medseg.regularizers.diagnostics import drop_statistics
    rows = drop_statistics(model, batch)        # one dict per Heuristic Dropout slot

    with DropRecorder(model) as rec:            # or accumulated over many batches
        for x in batches:
            model(x)
    rows, freq = rec.rows(), rec.frequencies()

While recording, only the Heuristic Dropout modules are in training mode (BatchNorm
and every other module in evaluation mode), gradients are off, and the model's modes
are restored afterwards; the weights never change. Each slot's statistics are taken
on the tensor the module drops from (after the ReLU it took over, if fused), with
the module's own selection (``skip_constant`` included). Columns (:data:`COLUMNS`):

* ``slot`` — module path; ``channels``; ``spatial`` — ``H×W`` (``D×H×W``);
* ``dropped_per_sample`` — mean number of channels replaced per sample;
* ``dead_fraction`` — share of the dropped channels whose variance ≤ the module's
  ``eps`` (a no-op drop for an all-zero channel); ``low_variance_fraction`` — share
  with variance < 1e-4;
* ``entropy_dropped``/``entropy_kept``, ``variance_dropped``/``variance_kept`` — means
  over the dropped resp. kept (sample, channel) pairs;
* ``selection_entropy`` — entropy of how often each channel is dropped, normalised so
  that 0 = the same channels every time and 1 = every channel equally often:
  ``(H − ln n) / (ln C − ln n)`` with ``H = −Σ_c f_c ln f_c`` over the share ``f_c`` of
  all drops that fell on channel ``c`` and ``n`` the mean drops per sample (NaN when
  nothing was dropped or every channel is dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .heuristic import HeuristicDropout

COLUMNS = ["slot", "channels", "spatial", "dropped_per_sample", "dead_fraction",
           "low_variance_fraction", "entropy_dropped", "entropy_kept", "variance_dropped",
           "variance_kept", "selection_entropy"]
#: variance below which a dropped channel counts as low-variance
LOW_VARIANCE = 1e-4


@dataclass
class SlotDrops:
    """Running sums of one slot's selections."""

    slot: str
    channels: int
    spatial: list[str] = field(default_factory=list)
    samples: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("dropped", "dead", "low", "e_drop", "e_kept", "v_drop", "v_kept"), 0.0))
    #: per channel: times dropped, and times dropped while constant (variance ≤ eps)
    counts: torch.Tensor | None = None
    dead_counts: torch.Tensor | None = None

    def add(self, entropy: torch.Tensor, variance: torch.Tensor, drop: torch.Tensor,
            eps: float, spatial: str) -> None:
        variance = variance.double()
        dead = drop & (variance <= eps)
        kept = ~drop
        s = self.sums
        s["dropped"] += int(drop.sum())
        s["dead"] += int(dead.sum())
        s["low"] += int((drop & (variance < LOW_VARIANCE)).sum())
        s["e_drop"] += float(entropy[drop].sum())
        s["e_kept"] += float(entropy[kept].sum())
        s["v_drop"] += float(variance[drop].sum())
        s["v_kept"] += float(variance[kept].sum())
        self.samples += drop.shape[0]
        counts, dead_counts = drop.sum(dim=0).cpu(), dead.sum(dim=0).cpu()
        self.counts = counts if self.counts is None else self.counts + counts
        self.dead_counts = dead_counts if self.dead_counts is None else self.dead_counts + dead_counts
        if spatial not in self.spatial:
            self.spatial.append(spatial)

    def row(self) -> dict:
        s, n_pairs = self.sums, self.samples * self.channels
        n_kept = n_pairs - s["dropped"]
        return {
            "slot": self.slot, "channels": self.channels, "spatial": ";".join(self.spatial),
            "dropped_per_sample": _ratio(s["dropped"], self.samples),
            "dead_fraction": _ratio(s["dead"], s["dropped"]),
            "low_variance_fraction": _ratio(s["low"], s["dropped"]),
            "entropy_dropped": _ratio(s["e_drop"], s["dropped"]),
            "entropy_kept": _ratio(s["e_kept"], n_kept),
            "variance_dropped": _ratio(s["v_drop"], s["dropped"]),
            "variance_kept": _ratio(s["v_kept"], n_kept),
            "selection_entropy": selection_entropy(self.counts, self.samples),
        }


def _ratio(num: float, den: float) -> float:
    return float(num) / den if den else math.nan


def selection_entropy(counts: torch.Tensor | None, samples: int) -> float:
    """``(H − ln n) / (ln C − ln n)`` of the per-channel drop ``counts`` (see module doc)."""
    if counts is None or samples == 0:
        return math.nan
    total = float(counts.sum())
    C = counts.numel()
    n = total / samples
    if total == 0 or n >= C:
        return math.nan
    f = counts.double() / total
    h = float(-torch.special.xlogy(f, f).sum())
    return min(1.0, max(0.0, (h - math.log(n)) / (math.log(C) - math.log(n))))


class DropRecorder:
    """Context manager: records every Heuristic Dropout slot of ``model`` while it runs.

    Raises ``ValueError`` if ``model`` has no :class:`HeuristicDropout` module.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = {name: m for name, m in model.named_modules() if isinstance(m, HeuristicDropout)}
        if not self.modules:
            raise ValueError("the network has no Heuristic Dropout slot (no HeuristicDropout module)")
        self.slots: dict[str, SlotDrops] = {}
        self._handles: list = []
        self._modes: dict[nn.Module, bool] = {}
        self._grad = None

    def __enter__(self) -> DropRecorder:
        self._modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        for name, module in self.modules.items():
            module.train()
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        self._grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        return self

    def __exit__(self, *exc) -> None:
        torch.set_grad_enabled(self._grad)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, mode in self._modes.items():
            m.training = mode

    def _hook(self, name: str):
        def pre(module: HeuristicDropout, args) -> None:
            x = args[0]
            if module.activation == "relu":  # fused: it drops from relu(input)
                x = F.relu(x)
            entropy, variance = module.statistics(x)
            slot = self.slots.setdefault(name, SlotDrops(name, x.shape[1]))
            spatial = "×".join(str(s) for s in x.shape[2:])
            slot.add(entropy, variance, module.dropped(entropy, variance), module.eps, spatial)

        return pre

    def rows(self) -> list[dict]:
        """One row (:data:`COLUMNS`) per slot that ran, in network order."""
        return [self.slots[n].row() for n in self.modules if n in self.slots]

    def frequencies(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per slot: (share of samples in which each channel was dropped, the same for
        drops of a constant channel), each (C,) float64."""
        return {n: (s.counts.double() / s.samples, s.dead_counts.double() / s.samples)
                for n, s in ((n, self.slots[n]) for n in self.modules if n in self.slots)}


def drop_statistics(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """Run ``model`` on the batch ``x`` (Heuristic Dropout slots in training mode, the rest
    in evaluation mode, no gradients) and return one row of statistics per slot."""
    with DropRecorder(model) as recorder:
        model(x)
    return recorder.rows()
