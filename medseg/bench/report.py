"""Plain-text tables and the JSON document of a benchmark run."""

from __future__ import annotations

import json
import platform
import time
from typing import Any, Iterable, Sequence

import torch

from . import Row


def result_text(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "—"}[passed]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def render(headers: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    """Left-aligned text columns separated by two spaces."""
    lines = [list(map(str, line)) for line in lines]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def generic_table(rows: list[Row]) -> str:
    """name | value | unit | target | result — for sections without their own table."""
    return render(
        ["name", "value", "unit", "target", "result"],
        [[r["name"], fmt(r.get("value")), r.get("unit", ""), r.get("target") or "—",
          result_text(r.get("passed")) if "target" in r else "—"] for r in rows])


def environment() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def summary(rows: list[Row]) -> dict[str, Any]:
    """Count the judged targets: each entry of a row's ``checks`` (if it has them),
    else the row's own ``passed``."""
    verdicts: list[tuple[str, bool]] = []
    for r in rows:
        checks = r.get("checks")
        if checks:
            verdicts += [(f"{r['name']} ({metric})", c["passed"]) for metric, c in checks.items()
                         if c.get("passed") is not None]
        elif r.get("passed") is not None:
            verdicts.append((r["name"], r["passed"]))
    failed = [name for name, ok in verdicts if not ok]
    return {"targets_checked": len(verdicts), "targets_failed": failed,
            "passed": (not failed) if verdicts else None}


def document(rows: list[Row], meta: dict[str, Any]) -> str:
    """The JSON written by ``medseg bench --out``."""
    doc = {"meta": {**environment(), **meta}, "summary": summary(rows), "rows": rows}
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
