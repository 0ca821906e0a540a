"""Splits (medseg.data.splits), the slice cache (medseg.data.cache) and the DataModule."""

import os

import numpy as np
import pytest
import torch

from medseg.data.cache import SliceCache, prepare
from medseg.data.datamodule import SegmentationDataModule
from medseg.data.splits import load_split, make_split, save_split
from medseg.errors import DataError


def test_pancreas_split_is_by_scan_seeded_and_recorded(pancreas_cfg, tmp_path):
    split = make_split(pancreas_cfg["data"])
    assert [len(split[k]) for k in ("train", "val", "test")] == [2, 1, 2]
    ids = split["train"] + split["val"] + split["test"]
    assert len(set(ids)) == 5 and split["seed"] == 0 and split["layout"] == "tcia"
    assert all(split["cases"][c]["label"] for c in ids)
    assert make_split(pancreas_cfg["data"]) == split
    other = make_split({**pancreas_cfg["data"], "split_seed": 1})
    assert other["train"] + other["val"] + other["test"] != ids
    save_split(split, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json", "pancreas") == split


def test_bagls_split_draws_train_and_val_from_training(bagls_cfg):
    split = make_split(bagls_cfg["data"])
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (24, 6, 8)
    assert all(c.startswith("training/") for c in split["train"] + split["val"])
    assert all(c.startswith("test/") for c in split["test"])
    assert not set(split["train"]) & set(split["val"])


def test_split_errors_name_the_file(pancreas_cfg, tmp_path):
    with pytest.raises(DataError, match="only 5 scans"):
        make_split({**pancreas_cfg["data"], "num_cases": 9, "split": [6, 1, 2]})
    split = make_split(pancreas_cfg["data"])
    split["val"] = [split["train"][0]]
    save_split(split, tmp_path / "bad.json")
    with pytest.raises(DataError, match="bad.json.*both 'train' and 'val'"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="broken.json"):
        load_split(tmp_path / "broken.json")
    with pytest.raises(DataError, match="for dataset 'pancreas'"):
        load_split(tmp_path / "bad.json", "bagls")


def _cfg(base, tmp_path, **data):
    return {**base, "data": {**base["data"], "cache_dir": str(tmp_path / "cache"), **data}}


@pytest.mark.slow
def test_second_prepare_does_no_work_and_changed_settings_rebuild(pancreas_cfg, tmp_path):
    cfg = _cfg(pancreas_cfg, tmp_path)
    split = make_split(cfg["data"])
    first = prepare(cfg, split, progress=False)
    assert (first.built, first.reused) == (5, 0)
    again = prepare(cfg, split, progress=False)
    assert (again.built, again.reused) == (0, 5) and again.folder == first.folder
    resized = prepare(_cfg(pancreas_cfg, tmp_path, size=[32, 32]), split, progress=False)
    assert resized.built == 5 and resized.folder != first.folder
    windowed = prepare(_cfg(pancreas_cfg, tmp_path, window=[-50.0, 200.0]), split, progress=False)
    assert windowed.built == 5 and windowed.folder not in (first.folder, resized.folder)


def test_changed_source_or_broken_entry_rebuilds_only_that_case(pancreas_cfg, tmp_path):
    cfg = _cfg(pancreas_cfg, tmp_path)
    split = make_split(cfg["data"])
    prepare(cfg, split, progress=False)
    cache = SliceCache(cfg["data"])
    a, b = split["train"][0], split["test"][0]
    label = split["cases"][a]["label"]
    st = os.stat(label)
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.entry_path(b).write_bytes(b"truncated")
    report = prepare(cfg, split, progress=False)
    assert (report.built, report.reused) == (2, 3)


def test_interrupted_prepare_leaves_no_half_written_entry(pancreas_cfg, tmp_path, monkeypatch):
    cfg = _cfg(pancreas_cfg, tmp_path)
    split = make_split(cfg["data"])
    calls = {"n": 0}
    real_savez = np.savez

    def dying_savez(file, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(file, "wb") as fh:  # half a file, then the process "dies"
                fh.write(b"PK\x03\x04partial")
            raise KeyboardInterrupt
        return real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, split, progress=False)
    monkeypatch.setattr(np, "savez", real_savez)
    folder = SliceCache(cfg["data"]).folder
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    assert len(list(folder.glob("*.npz"))) == 1
    report = prepare(cfg, split, progress=False)
    assert (report.built, report.reused) == (4, 1)


def test_cache_entry_contents(pancreas_cfg, tmp_path):
    cfg = _cfg(pancreas_cfg, tmp_path)
    split = make_split(cfg["data"])
    prepare(cfg, split, progress=False)
    from medseg.data import load_pancreas_case

    cid = split["test"][0]
    entry = SliceCache(cfg["data"]).load(cid)
    case = load_pancreas_case(split["cases"][cid]["image"], split["cases"][cid]["label"])
    z = case.image.shape[0]
    assert entry["image"].shape == (z, 1, 64, 64) and entry["image"].dtype == np.float16
    assert 0.0 <= entry["image"].min() and entry["image"].max() <= 1.0
    assert np.array_equal(entry["native_label"], case.label)
    expected = np.clip((case.image - (-100.0)) / 340.0, 0, 1)
    assert np.allclose(entry["image"][:, 0], expected, atol=2e-3)  # 64³ synthetic: no resize


@pytest.mark.slow
def test_datamodule_serves_augmented_train_slices_and_whole_cases(bagls_cfg):
    split = make_split(bagls_cfg["data"])
    dm = SegmentationDataModule(bagls_cfg, split, progress=False)
    dm.prepare_data()
    torch.manual_seed(0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 64, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (8, 1, 64, 32)
    assert set(torch.unique(batch["label"]).tolist()) <= {0.0, 1.0}
    case = next(iter(dm.test_dataloader()))
    assert case["image"].shape[0] == 1 and case["image"].shape[1:] == (1, 64, 32)
    assert case["native_label"].ndim == 3 and case["case_id"] == split["test"][0]
    again = next(iter(dm.test_dataloader()))
    assert torch.equal(case["image"], again["image"])  # no augmentation outside training
    no_aug = SegmentationDataModule({**bagls_cfg, "data": {**bagls_cfg["data"], "augment": False}},
                                    split, progress=False)
    no_aug.setup("fit")
    raw = no_aug.train_set[0]["image"]
    aug = [dm.train_set[0]["image"] for _ in range(6)]
    assert any(not torch.allclose(a, raw) for a in aug)


@pytest.mark.slow
def test_samples_per_epoch_sets_the_draws_per_epoch_at_any_training_set_size(bagls_cfg):
    from medseg.data.splits import train_subset

    split = make_split(bagls_cfg["data"])
    small = {**split, "train": train_subset(split["train"], 3, seed=0)}
    for fraction in (0.0, 0.5):
        cfg = {**bagls_cfg, "data": {**bagls_cfg["data"], "foreground_fraction": fraction},
               "train": {**bagls_cfg["train"], "samples_per_epoch": 20}}
        dm = SegmentationDataModule(cfg, small, progress=False)
        dm.prepare_data()
        dm.setup("fit")
        assert len(dm.train_set) == 3
        loader = dm.train_dataloader()
        assert len(loader.sampler) == 20 and sum(len(b["image"]) for b in loader) == 20
    plain = SegmentationDataModule(bagls_cfg, small, progress=False)
    plain.setup("fit")
    assert plain.train_sampler() is None and len(plain.train_dataloader().dataset) == 3
