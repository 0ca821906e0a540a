"""``medseg bench`` — performance benchmarks, organised as named sections.

A *section* is a function ``run(options) -> list[row]`` registered under a name
with :func:`register_section`; ``medseg bench --section a,b`` runs those sections
(default: all, in registration order), prints one table per section and writes
every row to a JSON file. Adding a benchmark (data-loader throughput, predict
time, …) means writing such a function in a module of this package and
registering it below — nothing else changes.

A *row* is a JSON-serialisable ``dict`` with at least ``section``, ``name``,
``value`` and ``unit``; a row that checks a target also has ``target`` (text,
e.g. ``"≤ 0.5"``) and ``passed`` (``True``/``False``, ``None`` when the target does
not apply to this run, e.g. in ``--quick`` mode). A section may add any further
fields and may register a ``table`` function to print its rows its own way.

Sections:

* ``regularizers`` (:mod:`.regularizers`) — each regularizer's forward+backward
  time relative to a 3×3 conv of the same width on the same input, plus its peak
  extra memory;
* ``unet_step`` (:mod:`.unet_step`) — a U-Net training step with the regularizer in
  every slot relative to the same U-Net without;
* ``loader`` (:mod:`.loader`) — the training DataLoader's throughput against the
  slices/s a training step consumes (issue 4);
* ``predict`` (:mod:`.predict`) — ``medseg predict`` end to end against the pure
  forward pass (issue 4);
* ``predict_ensemble`` (:mod:`.predict`) — ``medseg predict`` with 5 checkpoints and
  ``--tta`` end to end against 20 forward passes of one network (issue 12).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

Row = dict[str, Any]


@dataclass
class BenchOptions:
    """What the user asked for; every section reads the fields it needs."""

    repeats: int | None = None        # None → the section's default
    quick: bool = False               # tiny shapes, 1 repeat: checks the plumbing, not the targets
    only: list[str] | None = None     # regularizer keys (regularizer sections), None → all
    device: str = "cpu"
    progress: Callable[[str], None] | None = None  # called with a line before each measurement
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def repeats_or(self, default: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 1 if self.quick else default


@dataclass
class Section:
    name: str
    description: str
    run: Callable[[BenchOptions], list[Row]]
    table: Callable[[list[Row]], str] | None = None


_SECTIONS: dict[str, Section] = {}


def register_section(name: str, description: str, run: Callable[[BenchOptions], list[Row]],
                     table: Callable[[list[Row]], str] | None = None) -> None:
    """Make ``run`` available as ``medseg bench --section name``."""
    _SECTIONS[name] = Section(name, description, run, table)


def sections() -> dict[str, Section]:
    """Registered sections in run order."""
    return dict(_SECTIONS)


def _lazy(module: str, attr: str) -> Callable[..., Any]:
    # import a section's module only when it runs (keeps `medseg --help` fast)
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module, __name__), attr)(*args, **kwargs)

    return call


def _loader(options: BenchOptions) -> list[Row]:
    return _lazy(".loader", "bench_loader")(repeats=options.repeats_or(3), quick=options.quick)


def _predict(options: BenchOptions) -> list[Row]:
    kwargs: dict[str, Any] = {"repeats": options.repeats_or(3), "device": options.device}
    if options.quick:
        kwargs.update(size=32, slices=4)
    return _lazy(".predict", "bench_predict")(**kwargs)


def _predict_ensemble(options: BenchOptions) -> list[Row]:
    kwargs: dict[str, Any] = {"repeats": options.repeats_or(3), "device": options.device}
    if options.quick:
        kwargs.update(size=32, slices=4)
    return _lazy(".predict", "bench_predict_ensemble")(**kwargs)


register_section(
    "regularizers",
    "forward+backward of every regularizer vs a 3×3 conv of the same width; peak extra memory",
    _lazy(".regularizers", "bench_regularizers"), _lazy(".regularizers", "format_table"))
register_section(
    "unet_step",
    "U-Net training step with the regularizer in every slot vs the same U-Net without",
    _lazy(".unet_step", "bench_unet_step"), _lazy(".unet_step", "format_table"))
register_section(
    "loader", "training DataLoader throughput vs the slices/s a training step consumes", _loader)
register_section(
    "predict", "medseg predict end to end vs the forward pass alone", _predict)
register_section(
    "predict_ensemble", "medseg predict, 5 checkpoints with --tta, end to end vs 20 forward passes",
    _predict_ensemble)

__all__ = ["BenchOptions", "Row", "Section", "register_section", "sections"]
