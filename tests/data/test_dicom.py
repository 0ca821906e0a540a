"""The DICOM series finder, truncation check and slice order shared by the CT reader and predict.

The CT reader (:mod:`medseg.data.ct`) calls the finder with its own rules
(``SERIES_RULES``), ``medseg predict`` with the defaults; both order slices by
:func:`medseg.data.dicom.order_by_position`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.data import read_ct_volume, synth_pancreas
from medseg.data.ct import SERIES_RULES
from medseg.data.dicom import find_series, find_series_below, order_by_position, truncation
from medseg.errors import DataError

SIZE, SLICES = 16, 5


@pytest.fixture(scope="module")
def tcia(tmp_path_factory) -> Path:
    return synth_pancreas(tmp_path_factory.mktemp("dicom") / "tcia", cases=1, size=SIZE, slices=SLICES,
                          seed=5)


@pytest.fixture
def series(tcia, tmp_path) -> Path:
    """A writable copy of the one series folder."""
    src = next((tcia / "Pancreas-CT" / "PANCREAS_0001").rglob("*.dcm")).parent
    return Path(shutil.copytree(src, tmp_path / "patient" / "series"))


def _object(path: Path, sop_class: str, pixels: bool) -> Path:
    """A non-image DICOM object (an RT Dose carries its grid as pixel data)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "OT"
    if pixels:
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 16, 16, 15
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


RTSTRUCT, RTDOSE = "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.5.1.4.1.1.481.2"


def test_structure_set_beside_the_slices_is_skipped_by_the_reader_refused_by_predict(series):
    ref, _ = read_ct_volume(series)
    obj = _object(series / "zz_rtstruct.dcm", RTSTRUCT, pixels=False)
    hu, _ = read_ct_volume(series)
    np.testing.assert_array_equal(hu, ref)
    with pytest.raises(DataError, match=f"{obj}: not an image but a RT Structure Set Storage"):
        find_series(sorted(series.iterdir()))  # predict's rules


def test_object_with_pixels_beside_the_slices_is_refused_naming_its_class(series):
    obj = _object(series / "zz_dose.dcm", RTDOSE, pixels=True)
    with pytest.raises(DataError, match=f"{obj}: not an image but a RT Dose Storage"):
        read_ct_volume(series)


def test_stray_file_rules(series):
    other = series.parent / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("a download's other folder may hold anything")
    assert sum(map(len, find_series_below(series.parent, **SERIES_RULES).values())) == SLICES
    stray = series / "thumbs.db"
    stray.write_bytes(b"\0not a slice")
    with pytest.raises(DataError, match=f"{stray}: not a DICOM file \\(found among the slices in {series}\\)"):
        find_series_below(series.parent, **SERIES_RULES)
    with pytest.raises(DataError, match=f"{other / 'readme.txt'}: not a DICOM file$"):
        find_series_below(series.parent)  # predict's rule: every file handed over must be DICOM
    assert sum(map(len, find_series_below(series.parent, not_dicom="skip").values())) == SLICES


def test_slices_without_series_uid_are_read_but_refused_by_predict(series):
    for f in series.iterdir():
        ds = pydicom.dcmread(f)
        del ds.SeriesInstanceUID
        ds.save_as(f)
    hu, _ = read_ct_volume(series)
    assert hu.shape == (SLICES, SIZE, SIZE)
    with pytest.raises(DataError, match="without a SeriesInstanceUID"):
        find_series(sorted(series.iterdir()))


def test_reader_stacks_slices_in_the_shared_order(series):
    # file names in the reverse of the anatomical order: the order comes from the positions
    files = sorted(series.iterdir())
    for k, f in enumerate(files):
        f.rename(series / f"tmp{k}")
    for k, f in enumerate(reversed(sorted(series.iterdir(), key=lambda p: int(p.name[3:])))):
        f.rename(series / f"{k:02d}.dcm")
    found = next(iter(find_series_below(series).values()))
    order = order_by_position([f.header for f in found])
    assert order != list(range(SLICES))  # names alone would give another order
    hu, _ = read_ct_volume(series)
    for z, i in enumerate(order):
        one, _ = read_ct_volume(found[i].path)
        np.testing.assert_array_equal(hu[z], one[0])


def test_one_truncation_check_for_headers_and_pixels(series):
    f = sorted(series.iterdir())[2]
    full = pydicom.dcmread(f)
    header = pydicom.dcmread(f, stop_before_pixels=True)
    assert truncation(f, full) is None and truncation(f, header) is None
    # a header alone: the file must be at least as large as the pixels it promises
    header.Rows = 4 * SIZE * SIZE
    assert "file has" in truncation(f, header)
    # read with its pixels: their length is compared
    full.PixelData = full.PixelData[:-2]
    assert "pixel data has" in truncation(f, full)
    f.write_bytes(f.read_bytes()[:-10])  # cut inside the pixels, the file still larger than they need
    with pytest.raises(DataError, match=f"{f}: .*truncated"):
        read_ct_volume(series)
