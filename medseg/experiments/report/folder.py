"""Which ``DIR/report`` folder ``medseg report --force`` may replace: only one medseg made
(the rule of train and synth), checked before any work."""

from __future__ import annotations

import glob
import json
import stat
from pathlib import Path

from ...errors import MedsegError
from ...io import MARKER, folder_kind, refuse_cwd_or_parent, refuse_strangers, special_kind

#: what a report folder holds (``report.md``, its tables and figures): ``--force`` replaces
#: a report folder without a marker only if every entry has one of these names
REPORT_ENTRIES = ("report.md", "summary.csv", "summary_*.csv", "summary_*.md", "runs.csv",
                  "repeats.csv", "comparisons.csv", "labels_*.csv", "tuned_*.csv",
                  "tuning_choices.csv", "learning_curve_*.csv", "learning_curve_*.png",
                  "learning_curve_*.svg", "boxplot_*.png", "boxplot_*.svg", "k_ablation_*.png",
                  "k_ablation_*.svg", "coadapt_*.png", "coadapt_*.svg", "qualitative_*.png",
                  "qualitative_*.svg")


def check_replaceable_report(target: Path) -> None:
    """``--force`` replaces ``DIR/report`` only when medseg made it (the rule of train and
    synth): a real folder (not a file, a link, a device), not the current folder or a
    parent of it, holding only what the report wrote — the files its marker lists, or
    (a report written before reports were marked) ``report.md`` and entries named as
    report files. Anything else is refused before any work, naming the first stranger."""
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        what = "a file" if stat.S_ISREG(mode) else special_kind(mode)
        raise MedsegError(f"{target}: exists and is {what}, not a report folder medseg made; "
                          "refusing to replace it even with --force (move it away)")
    refuse_cwd_or_parent(target)
    kind = folder_kind(target)
    if kind is not None and kind != "report":
        raise MedsegError(f"{target}: is a medseg {kind} folder, not a report; refusing to "
                          "replace it even with --force")
    if kind == "report":
        try:
            made = json.loads((target / MARKER).read_text()).get("files") or []
        except (OSError, ValueError, AttributeError):
            made = []
        allowed = [glob.escape(n) for n in made if isinstance(n, str)]  # exactly those files
    else:
        allowed = list(REPORT_ENTRIES)
        if any(target.iterdir()) and not (target / "report.md").is_file():
            raise MedsegError(f"{target}: has no report.md and no medseg marker: not a report "
                              "medseg wrote; refusing to replace it even with --force (move it away)")
    for entry in target.iterdir():
        if entry.is_symlink() or not entry.is_file():
            raise MedsegError(f"{entry}: not made by medseg (a report holds only files); refusing "
                              f"to replace the report folder {target} holding it (move it away first)")
    refuse_strangers(target, "report", allowed)
