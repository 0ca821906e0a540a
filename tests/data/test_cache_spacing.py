"""The slice cache keeps each case's native spacing in the axis order of its label array
(medseg.data.cache), and evaluation items carry it (medseg.data.datamodule.CaseDataset)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.data.cache import SliceCache
from medseg.data.datamodule import CaseDataset


def write_volume(path, array: np.ndarray, spacing_xyz) -> None:
    img = sitk.GetImageFromArray(array)  # array (z, y, x)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(path))


def test_ct_spacing_is_stored_as_z_y_x(pancreas_cfg, tmp_path):
    shape = (5, 12, 16)  # z, y, x: every axis a different size and spacing
    hu = np.full(shape, 40.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    label[1:4, 3:7, 5:11] = 1
    write_volume(tmp_path / "ct.nii.gz", hu, (0.7, 0.8, 2.5))
    write_volume(tmp_path / "label.nii.gz", label, (0.7, 0.8, 2.5))
    data = copy.deepcopy(pancreas_cfg["data"])
    data["cache_dir"] = str(tmp_path / "cache")
    cache = SliceCache(data)
    cache.folder.mkdir(parents=True)
    cache.build("anisotropic", tmp_path / "ct.nii.gz", tmp_path / "label.nii.gz", "fp")
    item = CaseDataset(cache, ["anisotropic"])[0]
    assert tuple(item["native_label"].shape) == shape
    assert np.array_equal(item["native_label"].numpy(), label)
    assert item["spacing"] == pytest.approx((2.5, 0.8, 0.7))  # NIfTI stores float32
    assert cache.is_fresh("anisotropic", "fp")


def test_entry_without_spacing_is_rebuilt(pancreas_cfg, tmp_path):
    data = copy.deepcopy(pancreas_cfg["data"])
    data["cache_dir"] = str(tmp_path / "cache")
    cache = SliceCache(data)
    cache.folder.mkdir(parents=True)
    np.savez(cache.entry_path("old"), fingerprint=np.asarray("fp"))  # an entry of an older medseg
    assert not cache.is_fresh("old", "fp")


@pytest.mark.slow
def test_bagls_frames_are_2d_in_pixels(bagls_cfg, tmp_path):
    from medseg.data.cache import prepare
    from medseg.data.splits import resolve_split

    cfg = copy.deepcopy(bagls_cfg)
    cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    split = resolve_split(cfg["data"])
    prepare(cfg, split, progress=False)
    item = CaseDataset(SliceCache(cfg["data"]), split["test"][:1])[0]
    assert item["spacing"] == (1.0, 1.0) and item["native_label"].shape[0] == 1
