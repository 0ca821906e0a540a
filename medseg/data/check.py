"""Dataset integrity check: read every case the way training will, list what is wrong.

In the spirit of nnU-Net's ``verify_dataset_integrity``: every scan/frame is
read with the real readers, and each problem becomes one line
``<file>: <problem>`` — missing label or mask, unreadable or truncated file,
image/label geometry mismatch, mask size ≠ image size, label values outside the
expected set ({0, 1} for TCIA labels, {0, 1, 2} for MSD), an empty folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from .bagls import load_bagls_frame
from .discovery import CaseRef, detect_layout, discover_bagls, discover_pancreas

#: label values each layout may contain
EXPECTED_LABELS = {"tcia": (0, 1), "msd": (0, 1, 2)}


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`.

    Attributes:
        problems: one ``"<file>: <problem>"`` line per problem found.
        cases: number of cases (scans or frames) examined.
        failed: number of cases with at least one problem.
        layout: the layout checked.
        dataset_problems: problems not tied to one case (empty or missing folders).
    """

    problems: list[str] = field(default_factory=list)
    cases: int = 0
    failed: int = 0
    layout: str = ""
    dataset_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __iter__(self) -> Iterator[str]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.cases} cases"
        extra = f" (and {self.dataset_problems} dataset problem(s))" if self.dataset_problems else ""
        return f"FAILED: {self.failed} of {self.cases} cases{extra}"


def printable(line: str) -> str:
    """A report line that can always be printed: a file name's bytes that are not UTF-8
    (kept by Python as surrogates, which printing refuses) shown as ``\\xff``."""
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _printable(report: "CheckReport") -> "CheckReport":
    report.problems = [printable(line) for line in report.problems]
    return report


def _empty(root: Path) -> bool:
    return not any(not c.name.startswith(".") for c in root.iterdir())


def _check_pancreas_case(ref: CaseRef, layout: str) -> list[str]:
    from .pancreas import load_pancreas_case

    if ref.label is None:
        where = "labelsTr/" + ref.image.name if layout == "msd" else "the labels folder"
        return [f"{ref.image}: missing label (no label file numbered like {ref.case_id} in {where})"]
    try:
        load_pancreas_case(ref.image, ref.label, case_id=ref.case_id,
                           label_values=EXPECTED_LABELS[layout])
    except DataError as exc:
        return [str(exc)]
    return []


def _check_bagls_frame(ref: CaseRef) -> list[str]:
    if ref.label is None:
        return [f"{ref.image.with_name(ref.image.stem + '_seg.png')}: missing mask (frame {ref.case_id})"]
    try:
        load_bagls_frame(ref.image, require_mask=True)
    except DataError as exc:
        return [str(exc)]
    return []


def check_nnunet(root: Path, progress: bool = False) -> CheckReport:
    """nnU-Net's dataset integrity verification on an nnU-Net v2 raw (or Decathlon) folder:
    dataset.json readable and supported, every case with every channel and a label, channels
    and label on one grid, label values in dataset.json, no NaN/Inf, ``numTraining`` matching."""
    from tqdm import tqdm

    from .nnunet import _collect, case_problems, read_description

    report = CheckReport(layout="nnunet")
    try:
        description = read_description(root)
    except DataError as exc:
        report.problems.append(str(exc))
        report.dataset_problems = 1
        return report
    cases, found = _collect(root, description, "imagesTr", require_labels=True)
    ids = sorted({c.case_id for c in cases} | {cid for cid, _ in found if cid is not None})
    if description.num_training != len(ids):
        found.append((None, f"{root / 'dataset.json'}: numTraining is {description.num_training}, "
                            f"imagesTr holds {len(ids)} case(s)"))
    failed = {cid for cid, _ in found if cid is not None}
    report.problems += [line for _, line in found]
    report.dataset_problems = sum(1 for cid, _ in found if cid is None)
    test_cases: list = []
    if (root / "imagesTs").is_dir():
        test_cases, test_found = _collect(root, description, "imagesTs", require_labels=False)
        report.problems += [line for _, line in test_found]
        failed |= {f"imagesTs/{cid}" for cid, _ in test_found if cid is not None}
        report.dataset_problems += sum(1 for cid, _ in test_found if cid is None)
    named = [(c.case_id, c) for c in cases] + [(f"imagesTs/{c.case_id}", c) for c in test_cases]
    for name, case in tqdm(named, desc="check nnunet", unit="case", disable=None if progress else True):
        lines = case_problems(case, description)
        if lines:
            failed.add(name)
            report.problems += lines
    report.cases = len(ids) + len({f"imagesTs/{c.case_id}" for c in test_cases} |
                                  {n for n in failed if n.startswith("imagesTs/")})
    report.failed = len(failed)
    return report


def check_dataset(dataset: str, root: str | os.PathLike, layout: str = "auto", *,
                  progress: bool = False) -> CheckReport:
    """Check every case of ``dataset`` ("pancreas", "bagls" or "nnunet") under ``root``.

    Raises:
        DataError: ``root`` does not exist or is not a folder (a usage error);
            everything else is reported in the returned :class:`CheckReport`.
    """
    from tqdm import tqdm

    r = Path(root)
    if not r.exists():
        raise DataError(f"{r}: dataset root not found")
    if not r.is_dir():
        raise DataError(f"{r}: dataset root is not a folder")
    report = CheckReport()
    if _empty(r):
        report.problems.append(f"{r}: empty folder (no dataset files)")
        report.dataset_problems = 1
        return report
    if dataset == "nnunet":
        return _printable(check_nnunet(r, progress))
    refs: list[CaseRef] = []
    try:
        if layout == "auto":
            layout = detect_layout(r, dataset)
        report.layout = layout
        if dataset == "pancreas":
            refs = discover_pancreas(r, layout, require_labels=False)
        elif dataset == "bagls":
            found = discover_bagls(r)
            for split in ("training", "test"):
                if not (r / split).is_dir():
                    report.problems.append(f"{r / split}: folder missing")
                elif not found[split]:
                    report.problems.append(f"{r / split}: empty folder (no N.png frames)")
            refs = found["training"] + found["test"]
        else:
            raise DataError(f"unknown dataset '{dataset}' (pancreas or bagls)")
    except DataError as exc:
        report.problems.append(str(exc))
    report.dataset_problems = len(report.problems)
    report.cases = len(refs)
    for ref in tqdm(refs, desc=f"check {dataset}", unit="case", disable=None if progress else True):
        found_problems = (_check_pancreas_case(ref, layout) if dataset == "pancreas"
                          else _check_bagls_frame(ref))
        if found_problems:
            report.failed += 1
            report.problems.extend(found_problems)
    return _printable(report)
