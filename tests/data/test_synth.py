"""Synthetic generators: layouts, determinism, atomicity, phantom properties."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

import importlib

sp = importlib.import_module("medseg.data.synth_pancreas")  # the module, not the function
from medseg.data import bagls_frame, pancreas_phantom, synth_bagls, synth_pancreas
from medseg.errors import DataError

SIZE, SLICES = 32, 8


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["tcia", "msd"])
def test_pancreas_same_seed_same_bytes(tmp_path, layout):
    a = synth_pancreas(tmp_path / "a", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=1)
    b = synth_pancreas(tmp_path / "b", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=1)
    c = synth_pancreas(tmp_path / "c", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=2)
    da, db, dc = tree_digest(a), tree_digest(b), tree_digest(c)
    assert da == db and len(da) > 3
    assert da != dc


def test_bagls_same_seed_same_bytes(tmp_path):
    a = synth_bagls(tmp_path / "a", frames=6, test_frames=2, seed=4)
    b = synth_bagls(tmp_path / "b", frames=6, test_frames=2, seed=4)
    c = synth_bagls(tmp_path / "c", frames=6, test_frames=2, seed=5)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)
    assert len(list((a / "training").glob("*_seg.png"))) == 6
    assert sorted(p.name for p in (a / "test").iterdir()) == sorted(
        f"{i}{s}" for i in range(2) for s in (".png", "_seg.png", ".meta"))


def test_tcia_tree_quirks(tmp_path):
    root = synth_pancreas(tmp_path / "t", cases=6, size=SIZE, slices=SLICES, seed=0)
    depths, unsorted_names = set(), 0
    for n in range(1, 7):
        files = sorted((root / "Pancreas-CT" / f"PANCREAS_{n:04d}").rglob("*.dcm"))
        assert len(files) == SLICES
        depths.add(len(files[0].relative_to(root / "Pancreas-CT").parts))
        z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
        if z != sorted(z):
            unsorted_names += 1
        assert (root / "TCIA_pancreas_labels-02-05-2017" / f"label{n:04d}.nii.gz").is_file()
    assert len(depths) == 2           # some patients have an extra folder level
    assert unsorted_names >= 2        # name order ≠ slice order for some patients
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    for tag in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                "RescaleSlope", "RescaleIntercept", "InstanceNumber"):
        assert tag in ds, tag
    assert ds.BitsAllocated == 16 and ds.Modality == "CT"


def test_refuses_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty; pass --force"):
        synth_pancreas(out, cases=1, size=SIZE, slices=SLICES)
    # --force only replaces an earlier synth output, never an arbitrary folder
    with pytest.raises(DataError, match="refusing to replace"):
        synth_pancreas(out, cases=1, size=SIZE, slices=SLICES, force=True)
    assert (out / "precious.txt").read_text() == "keep me"
    synth = synth_bagls(tmp_path / "b", frames=2, test_frames=1)
    with pytest.raises(DataError, match="not empty"):
        synth_bagls(synth, frames=3, test_frames=1)
    synth_bagls(synth, frames=3, test_frames=1, force=True)
    assert len(list((synth / "training").glob("*.meta"))) == 3


def test_interrupted_synth_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = sp.write_dicom_series

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sp, "write_dicom_series", failing)
    with pytest.raises(KeyboardInterrupt):
        synth_pancreas(tmp_path / "out", cases=3, size=SIZE, slices=SLICES)
    assert list(tmp_path.iterdir()) == []


def test_phantom_properties_default_size():
    vols, centroids, noise = [], [], []
    for i in range(3):
        ph = pancreas_phantom(i)
        lab = ph.label > 0
        with_target = lab.any(axis=(1, 2))
        assert 0.15 <= with_target.mean() <= 0.6   # part of the slices only
        body = ph.hu > -500
        assert 0.001 < lab.sum() / body.sum() < 0.03   # a small target
        vols.append(int(lab.sum()))
        centroids.append(np.argwhere(lab).mean(axis=0))
        noise.append(float(np.std(ph.hu[:, :6, :6])))  # air corner: noise only
        # low contrast: within 60 HU of its immediate surroundings (a fat boundary is ~150 HU away)
        from scipy import ndimage
        ring = ndimage.binary_dilation(lab, iterations=1) & ~lab & (ph.hu > -50)
        assert abs(float(ph.hu[lab].mean()) - float(ph.hu[ring].mean())) < 60
    assert len(set(vols)) == 3
    assert max(np.linalg.norm(a - b) for a in centroids for b in centroids) > 1.0
    assert max(noise) / min(noise) > 1.1   # noise level varies per scan


def test_phantom_is_independent_of_case_count():
    a = pancreas_phantom(2, seed=9, size=SIZE, slices=SLICES)
    b = pancreas_phantom(2, seed=9, size=SIZE, slices=SLICES)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert a.geometry == b.geometry


def test_bagls_frames_variety():
    frames = [bagls_frame(i, "training", 0) for i in range(100)]
    closed = np.mean([f.mask.sum() == 0 for f in frames])
    assert closed >= 0.10
    assert closed < 0.6
    sizes = {f.image.shape[:2] for f in frames}
    assert len(sizes) >= 3
    assert {f.image.ndim for f in frames} == {2, 3}
    open_frames = [f for f in frames if f.mask.any()]
    # the glottal gap is darker than the vocal folds around it
    from scipy import ndimage
    for f in open_frames:
        gray = f.image.astype(float) if f.image.ndim == 2 else f.image.mean(axis=2)
        m = f.mask > 0
        ring = ndimage.binary_dilation(m, iterations=4) & ~m
        assert gray[m].mean() < gray[ring].mean() - 10
    assert len({f.meta["hospital"] for f in frames}) >= 3
