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


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tcia", "msd"])
def test_pancreas_same_seed_same_bytes(tmp_path, layout):
    a = synth_pancreas(tmp_path / "a", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=1)
    b = synth_pancreas(tmp_path / "b", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=1)
    c = synth_pancreas(tmp_path / "c", layout=layout, cases=3, size=SIZE, slices=SLICES, seed=2)
    da, db, dc = tree_digest(a), tree_digest(b), tree_digest(c)
    assert da == db and len(da) > 3
    assert da != dc


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- pinned output ------------------------------------------------------------------------
# The synthetic data feed every figure the project reports, so the generators must not drift
# silently. These digests were taken from the generators before their readability refactor
# (issue 14) and still hold after it. If you change the phantom on purpose, update them here
# and re-measure what depends on the data (the demo table, the benches).

def _array_digest(*arrays: np.ndarray) -> str:
    """sha256 over dtype, shape and bytes of each array."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


PINNED_PANCREAS = {  # case index → digest of (rint(HU) as int16, label), seed 0, 64×64×16
    0: "067bbb759d515309e14acaa881506c46d747b09f9e5935312563e3514e74ff6a",
    1: "536fb1ad7a8d903116adb2fc0721c2a3cd11b180500943a721fe738e96950337",
}
PINNED_BAGLS = {  # (split, frame) → digest of (image, mask), seed 0: open gray (H2), closed, colour (H3)
    ("training", 0): "7e002ca569a165ee41325ae1f618f98051d2594406a03fcc7eb6ee12fddd485b",
    ("training", 3): "689caabe7fb3edc891c3456d9cf958bc5a2afe7ede6fb045db840edc033be594",
    ("training", 30): "c57ec41f5fd0b4f96f29375a8af9d8a55e6e92fef6e4b10d82a8fb470e056a0b",
    ("test", 4): "5469ac211e824471d90d6f11cbf5f3454236989d8ecdd8a7123ff876d99e71e8",
}


@pytest.mark.parametrize("index", sorted(PINNED_PANCREAS))
def test_pancreas_phantom_pinned(index):
    ph = pancreas_phantom(index, seed=0, size=64, slices=16)
    assert ph.hu.dtype == np.float32 and ph.label.dtype == np.uint8
    digest = _array_digest(np.rint(ph.hu).astype(np.int16), ph.label)
    assert digest == PINNED_PANCREAS[index], "the phantom changed; see the note above PINNED_PANCREAS"


def test_pancreas_phantom_pinned_geometry():
    ph = pancreas_phantom(0, seed=0, size=64, slices=16)
    assert ph.geometry.size == (64, 64, 16)
    assert ph.geometry.spacing == (6.1785, 6.1785, 7.956)
    assert ph.geometry.origin == (-206.027, -199.028, -199.083)
    assert ph.rescale == sp.RESCALE[0]
    assert set(np.unique(ph.label)) == {0, 1, 2}   # case 0 carries a tumour


@pytest.mark.parametrize("split,index", sorted(PINNED_BAGLS))
def test_bagls_frame_pinned(split, index):
    f = bagls_frame(index, split, 0)
    assert _array_digest(f.image, f.mask) == PINNED_BAGLS[(split, index)], \
        "the BAGLS generator changed; see the note above PINNED_PANCREAS"
