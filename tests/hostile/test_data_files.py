"""Hostile dataset files: each damaged copy of the tiny set must be reported naming the file.

``data check`` lists problems (exit 1, a line starting with the file, then FAILED);
``data prepare`` and ``data split`` stop with one ``medseg: error:`` line (exit 2).
Nothing may crash with a traceback.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from hostile_helpers import edit_dicom, series_files


def _tilt(root):
    files = series_files(root)
    import pydicom

    for k, f in enumerate(sorted(files, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * k * 2.5, z]  # shear in y: a gantry tilt
        ds.GantryDetectorTilt = "11.3"
        ds.save_as(f)
    return files[-1].parent


def _non_orthogonal(root):
    for f in series_files(root):
        edit_dicom(f, ImageOrientationPatient=[1, 0, 0, 0.2, 0.98, 0])
    return series_files(root)[0]


def _inconsistent_orientation(root):
    f = series_files(root)[2]
    edit_dicom(f, ImageOrientationPatient=[0, 1, 0, 1, 0, 0])
    return f


def _nonuniform_spacing(root):
    import pydicom

    files = sorted(series_files(root), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    files[2].unlink()  # a missing slice
    return files[3]


def _patch_text(f, tag, placeholder, value):
    """Store ``value`` verbatim in a DS/IS attribute (pydicom refuses to write it itself)."""
    edit_dicom(f, **{tag: placeholder})
    raw = f.read_bytes()
    assert raw.count(placeholder.encode()) == 1
    f.write_bytes(raw.replace(placeholder.encode(), value.encode()))


def _rescale_slope_text(root):
    f = series_files(root)[1]
    _patch_text(f, "RescaleSlope", "9.87", "abc ")
    return f


def _position_text(root):
    f = series_files(root)[1]
    _patch_text(f, "ImagePositionPatient", "1.25\\2.5\\3.75", "ab\\cd\\efghijk")
    return f


def _truncated_dicom(root):
    f = series_files(root)[0]
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    return f


def _zero_byte_dicom(root):
    f = series_files(root)[0]
    f.write_bytes(b"")
    return f


def _text_among_slices(root):
    f = series_files(root)[0].parent / "notes.txt"
    f.write_text("not a slice")
    return f


def _duplicate_position(root):
    import pydicom

    a, b = series_files(root)[:2]
    pos = pydicom.dcmread(a).ImagePositionPatient
    edit_dicom(b, ImagePositionPatient=pos)
    return b


def _label_nan(root):
    import nibabel as nib

    f = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    img = nib.load(str(f))
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(f))
    return f


def _label_values(root):
    import nibabel as nib

    f = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    img = nib.load(str(f))
    data = np.asarray(img.dataobj).astype(np.int16)
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(f))
    return f


def _label_truncated(root):
    f = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return f


def _label_not_gzip(root):
    f = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    f.write_bytes(b"this is not a gzip file")
    return f


def _label_wrong_grid(root):
    import nibabel as nib

    f = root / "TCIA_pancreas_labels-02-05-2017" / "label0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), str(f))
    return f


def _duplicate_patient(root):
    import shutil

    src = root / "Pancreas-CT" / "PANCREAS_0001"
    dup = root / "Pancreas-CT" / "pancreas-1"
    shutil.copytree(src, dup)
    return dup


def _two_series(root):
    import shutil

    import pydicom

    series = series_files(root)[0].parent
    other = series.parent / "second_series"
    shutil.copytree(series, other)
    uid = pydicom.uid.generate_uid()
    for f in other.glob("*.dcm"):
        edit_dicom(f, SeriesInstanceUID=uid)
    return root / "Pancreas-CT" / "PANCREAS_0001"


#: name → (damage(root) → the file the message must name, words it must hold)
PANCREAS_DAMAGE = {
    "gantry_tilt": (_tilt, "not stacked along the slice normal"),
    "non_orthogonal_orientation": (_non_orthogonal, "not two orthogonal unit vectors"),
    "inconsistent_orientation": (_inconsistent_orientation, "ImageOrientationPatient differs"),
    "missing_slice_spacing": (_nonuniform_spacing, "slice spacing is not uniform"),
    "rescale_slope_text": (_rescale_slope_text, "RescaleSlope"),
    "position_text": (_position_text, "ImagePositionPatient"),
    "truncated_dicom": (_truncated_dicom, ""),
    "zero_byte_dicom": (_zero_byte_dicom, ""),
    "text_among_slices": (_text_among_slices, "not a DICOM file"),
    "duplicate_position": (_duplicate_position, "same position"),
    "label_nan": (_label_nan, "NaN"),
    "label_values": (_label_values, "outside the expected set"),
    "label_truncated": (_label_truncated, ""),
    "label_not_gzip": (_label_not_gzip, ""),
    "label_wrong_grid": (_label_wrong_grid, "does not match"),
    "duplicate_patient_number": (_duplicate_patient, "second patient folder numbered 1"),
    "two_series_one_patient": (_two_series, "2 DICOM series"),
}


@pytest.mark.parametrize("damage", sorted(PANCREAS_DAMAGE))
def test_data_check_pancreas_names_the_file(cli, pancreas_copy, damage):
    fn, words = PANCREAS_DAMAGE[damage]
    bad = fn(pancreas_copy)
    r = cli("data", "check", "pancreas", pancreas_copy)
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    problems = [ln for ln in r.out.splitlines() if ln.startswith(str(bad))]
    assert problems, r.out
    assert words in problems[0], problems
    assert r.out.strip().splitlines()[-1].startswith("FAILED")


@pytest.mark.parametrize("damage", sorted(PANCREAS_DAMAGE))
def test_data_prepare_pancreas_one_line(cli, pancreas_copy, config_file, tmp_path, damage):
    fn, words = PANCREAS_DAMAGE[damage]
    bad = fn(pancreas_copy)
    split_out = tmp_path / "split.json"
    r = cli("data", "prepare", "--config", config_file(dataset_root=pancreas_copy), "--split-out", split_out)
    line = r.one_error_line(str(bad))
    assert words in line
    assert not split_out.exists()


def test_gantry_tilt_is_refused_by_the_reader(pancreas_copy):
    """Tilt is refused, not read with a wrong z spacing (the issue's second half)."""
    from medseg.data.ct import read_ct_volume
    from medseg.errors import DataError

    _tilt(pancreas_copy)
    with pytest.raises(DataError, match="gantry-tilted"):
        read_ct_volume(pancreas_copy / "Pancreas-CT" / "PANCREAS_0001")


def test_a_small_shear_within_tolerance_is_read(pancreas_copy):
    import pydicom

    from medseg.data.ct import read_ct_volume

    files = sorted(series_files(pancreas_copy), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 1e-4 * k, z]
        ds.save_as(f)
    volume, _ = read_ct_volume(pancreas_copy / "Pancreas-CT" / "PANCREAS_0001")
    assert volume.shape[0] == len(files)


# ----------------------------------------------------------------------------- BAGLS
def _png_header_bomb(path):
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _b_bomb(root):
    f = root / "training" / "0.png"
    _png_header_bomb(f)
    return f


def _b_truncated(root):
    f = root / "training" / "1.png"
    f.write_bytes(f.read_bytes()[:60])
    return f


def _b_not_png(root):
    f = root / "training" / "2.png"
    f.write_bytes(b"GIF89a not really")
    return f


def _b_mask_size(root):
    from PIL import Image

    f = root / "training" / "0_seg.png"
    Image.new("L", (7, 5)).save(f)
    return f


def _b_mask_missing(root):
    f = root / "training" / "3_seg.png"
    f.unlink()
    return f


def _b_meta_json(root):
    f = root / "training" / "1.meta"
    f.write_bytes(b"{not json")
    return f


def _b_zero_byte(root):
    f = root / "test" / "0.png"
    f.write_bytes(b"")
    return f


BAGLS_DAMAGE = {
    "decompression_bomb_header": _b_bomb,
    "truncated_png": _b_truncated,
    "not_a_png": _b_not_png,
    "mask_size_mismatch": _b_mask_size,
    "mask_missing": _b_mask_missing,
    "meta_not_json": _b_meta_json,
    "zero_byte_png": _b_zero_byte,
}


@pytest.mark.parametrize("damage", sorted(BAGLS_DAMAGE))
def test_data_check_bagls_names_the_file(cli, bagls_copy, damage):
    bad = BAGLS_DAMAGE[damage](bagls_copy)
    r = cli("data", "check", "bagls", bagls_copy)
    assert r.rc == 1, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    assert any(ln.startswith(str(bad)) for ln in r.out.splitlines()), r.out


@pytest.mark.parametrize("root_kind", ["missing", "file", "empty"])
@pytest.mark.parametrize("dataset", ["pancreas", "bagls"])
def test_data_check_bad_root(cli, tmp_path, root_kind, dataset):
    root = tmp_path / "root"
    if root_kind == "file":
        root.write_text("x")
    elif root_kind == "empty":
        root.mkdir()
    r = cli("data", "check", dataset, root)
    if root_kind == "empty":
        assert r.rc == 1 and str(root) in r.out and "Traceback" not in r.err
    else:
        r.one_error_line(str(root))
