"""Cross-validation over scans: folds partition the selected scans; config rules."""

from __future__ import annotations

import itertools

import pytest

from medseg.config import load_config, validate
from medseg.data.splits import full_split, load_split, make_folds, resolve_split, save_split, select_fold
from medseg.errors import ConfigError, DataError


@pytest.mark.parametrize("n,k,n_val", [(12, 6, 2), (12, 5, 1), (7, 3, 1), (5, 5, 1), (20, 4, 3)])
def test_folds_partition_the_scans(n, k, n_val):
    ids = [f"S{i:02d}" for i in range(n)]
    folds = make_folds(ids, k, n_val, seed=3)
    assert len(folds) == k
    tests = [c for f in folds for c in f["test"]]
    assert sorted(tests) == ids  # every scan a test case exactly once
    sizes = [len(f["test"]) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        assert len(f["val"]) == n_val
        parts = [set(f["train"]), set(f["val"]), set(f["test"])]
        assert all(not (a & b) for a, b in itertools.combinations(parts, 2))
        assert set().union(*parts) == set(ids)


def test_folds_are_seeded():
    ids = [f"S{i}" for i in range(12)]
    assert make_folds(ids, 6, 2, 0) == make_folds(ids, 6, 2, 0)
    assert make_folds(ids, 6, 2, 0) != make_folds(ids, 6, 2, 1)


def _cfg(root, cache, *extra):
    return load_config(None, ["data.dataset=pancreas", f"data.root={root}", f"data.cache_dir={cache}",
                              "data.num_cases=5", *extra])


def test_a_fold_run_sees_its_fold(pancreas_root, cache_dir, tmp_path):
    cfg = _cfg(pancreas_root, cache_dir, "data.folds=5", "data.split=[2,1,2]")
    full = full_split(cfg["data"])
    assert len(full["folds"]) == 5 and len(full["cases"]) == 5
    path = tmp_path / "split.json"
    save_split(full, path)
    seen = []
    for f in range(5):
        split = resolve_split({**cfg["data"], "split_file": str(path), "fold": f})
        assert split["test"] == full["folds"][f]["test"] and len(split["val"]) == 1
        assert len(split["train"]) == 3 and split["fold"] == f
        seen += split["test"]
    assert sorted(seen) == sorted(full["cases"])
    with pytest.raises(DataError, match="has 5 cross-validation folds, the config asks for data.folds = 4"):
        select_fold(load_split(path), 0, 4, str(path))


def test_a_split_file_with_a_scan_in_two_test_folds_is_refused(pancreas_root, cache_dir, tmp_path):
    cfg = _cfg(pancreas_root, cache_dir, "data.folds=5", "data.split=[2,1,2]")
    full = full_split(cfg["data"])
    test = list(full["folds"][0]["test"])
    others = [c for c in full["cases"] if c not in test]
    full["folds"][1] = {"train": others[1:], "val": others[:1], "test": test}
    save_split(full, tmp_path / "bad.json")
    with pytest.raises(DataError, match="test case in two cross-validation folds"):
        load_split(tmp_path / "bad.json")


@pytest.mark.parametrize("extra,message", [
    (["data.folds=6"], "leave no training scan"),
    (["data.folds=3", "data.fold=3"], "'data.fold' must be < data.folds"),
    (["data.fold=1"], "data.folds is 1"),
])
def test_fold_keys_are_checked(pancreas_root, cache_dir, extra, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(pancreas_root, cache_dir, "data.split=[2,1,2]", *extra)


def test_bagls_refuses_cross_validation():
    with pytest.raises(ConfigError, match="BAGLS has a fixed official test set"):
        validate({"data": {"dataset": "bagls", "root": "x", "folds": 3}})
