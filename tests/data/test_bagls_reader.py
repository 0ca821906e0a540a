"""BAGLS frames: discovery, grayscale and RGB images, masks, metadata, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.data import (BaglsFrame, bagls_frame, detect_layout, discover_bagls, load_bagls_frame,
                         read_frame_image, synth_bagls)
from medseg.errors import DataError

TRAIN, TEST, SEED = 40, 10, 2


@pytest.fixture(scope="module")
def bagls(tmp_path_factory) -> Path:
    return synth_bagls(tmp_path_factory.mktemp("bagls") / "bagls", frames=TRAIN, test_frames=TEST, seed=SEED)


def test_discovery(bagls):
    assert detect_layout(bagls, "bagls") == "bagls"
    found = discover_bagls(bagls)
    assert [len(found["training"]), len(found["test"])] == [TRAIN, TEST]
    # numeric order, not lexical: training/2 before training/10
    assert [r.case_id for r in found["training"][:12]] == [f"training/{i}" for i in range(12)]
    assert found["test"][0].case_id == "test/0"
    ref = found["training"][3]
    assert ref.image == bagls / "training" / "3.png" and ref.label == bagls / "training" / "3_seg.png"


@pytest.mark.slow
def test_frames_match_generator_gray_and_rgb(bagls):
    ndims = set()
    for ref in discover_bagls(bagls)["training"]:
        fr = load_bagls_frame(ref.image)
        i = int(ref.image.stem)
        truth = bagls_frame(i, "training", SEED)
        assert isinstance(fr, BaglsFrame) and fr.frame_id == f"training/{i}"
        assert fr.image.dtype == np.uint8
        np.testing.assert_array_equal(fr.image, truth.image)
        np.testing.assert_array_equal(fr.mask, truth.mask)
        assert fr.mask.dtype == np.uint8 and set(np.unique(fr.mask)) <= {0, 1}
        assert fr.mask.shape == fr.image.shape[:2]
        assert fr.meta == truth.meta and fr.meta["hospital"]
        ndims.add(fr.image.ndim)
        if fr.image.ndim == 3:
            assert fr.image.shape[2] == 3
    assert ndims == {2, 3}  # grayscale and RGB hospitals are both present


def test_mask_on_disk_is_0_255(bagls):
    raw = np.asarray(Image.open(bagls / "training" / "0_seg.png"))
    assert set(np.unique(raw)) <= {0, 255}


def test_mask_of_another_size(bagls, tmp_path):
    src = bagls / "training"
    shutil.copy(src / "0.png", tmp_path / "0.png")
    mask = np.asarray(Image.open(src / "0_seg.png"))
    Image.fromarray(mask[:-4]).save(tmp_path / "0_seg.png")
    with pytest.raises(DataError) as err:
        load_bagls_frame(tmp_path / "0.png")
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "0_seg.png")) and "mask is" in msg


def test_missing_mask_and_meta(bagls, tmp_path):
    shutil.copy(bagls / "training" / "1.png", tmp_path / "1.png")
    with pytest.raises(DataError, match=r"1_seg\.png: mask file not found"):
        load_bagls_frame(tmp_path / "1.png")
    fr = load_bagls_frame(tmp_path / "1.png", require_mask=False)
    assert fr.mask is None and fr.meta is None


def test_rgb_mask_and_rgba_image(tmp_path):
    img = np.zeros((6, 4, 4), np.uint8)
    img[..., 3] = 255
    img[1, 1, :3] = (10, 20, 30)
    Image.fromarray(img, "RGBA").save(tmp_path / "5.png")
    seg = np.zeros((6, 4, 3), np.uint8)
    seg[2, 1] = (0, 255, 0)
    Image.fromarray(seg).save(tmp_path / "5_seg.png")
    fr = load_bagls_frame(tmp_path / "5.png")
    assert fr.image.shape == (6, 4, 3) and tuple(fr.image[1, 1]) == (10, 20, 30)
    assert fr.mask.sum() == 1 and fr.mask[2, 1] == 1


def test_truncated_png_and_bad_meta(bagls, tmp_path):
    data = (bagls / "training" / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(data[: len(data) // 2])
    shutil.copy(bagls / "training" / "2_seg.png", tmp_path / "2_seg.png")
    with pytest.raises(DataError, match=r"2\.png: unreadable or truncated image file"):
        load_bagls_frame(tmp_path / "2.png")
    shutil.copy(bagls / "training" / "2.png", tmp_path / "2.png")
    (tmp_path / "2.meta").write_text("{not json")
    with pytest.raises(DataError, match=r"2\.meta: unreadable metadata"):
        load_bagls_frame(tmp_path / "2.png")


def test_read_frame_image_missing(tmp_path):
    with pytest.raises(DataError, match="image file not found"):
        read_frame_image(tmp_path / "0.png")


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        discover_bagls(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        discover_bagls(tmp_path / "empty")
    (tmp_path / "layout" / "training").mkdir(parents=True)
    (tmp_path / "layout" / "test").mkdir()
    with pytest.raises(DataError, match="no N.png frames"):
        discover_bagls(tmp_path / "layout")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a BAGLS layout"):
        discover_bagls(tmp_path / "other")


def test_meta_is_json_object(bagls):
    meta = json.loads((bagls / "test" / "0.meta").read_text())
    assert {"subject", "hospital", "device", "status"} <= set(meta)
