"""The synthetic CT's DICOM headers: the CT Image IOD's type 2 attributes and a study date/time,
so that a DICOM SEG made from a synthetic scan inherits valid patient and study modules.
With dicom3tools installed (Debian: dicom3tools), ``dciodvfy`` must report no error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

#: the CT Image IOD's type 2 (and for CT required 2C) attributes the synthetic headers lacked,
#: as dciodvfy listed them (issue 18)
TYPE2 = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
         "AccessionNumber", "PatientPosition", "PositionReferenceIndicator", "AcquisitionNumber")


def _first_slice(root: Path) -> Path:
    return sorted((root / "Pancreas-CT").rglob("*.dcm"))[0]


def test_synthetic_ct_carries_the_type2_attributes(pancreas_root):
    ds = pydicom.dcmread(str(_first_slice(pancreas_root)), stop_before_pixels=True)
    missing = [k for k in TYPE2 if k not in ds]
    assert not missing, missing
    assert len(ds.StudyDate) == 8 and ds.StudyDate.isdigit() and ds.StudyTime
    assert ds.PatientPosition == "HFS"


def test_study_date_is_fixed_so_the_same_seed_gives_the_same_bytes(tmp_path):
    from medseg.data import synth_pancreas

    files = []
    for name in ("a", "b"):
        root = Path(synth_pancreas(tmp_path / name, layout="tcia", cases=1, size=16, slices=2, seed=3))
        files.append(_first_slice(root).read_bytes())
    assert files[0] == files[1]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_reports_no_error(pancreas_root):
    out = subprocess.run(["dciodvfy", str(_first_slice(pancreas_root))], capture_output=True,
                         text=True, timeout=60)
    text = out.stdout + out.stderr
    assert "CTImage" in text
    assert not [line for line in text.splitlines() if line.startswith("Error")], text
