"""`medseg experiment`: every check before the first write; a recorded split is never redrawn.

Issue 20, mechanism 3: a refused experiment left its marker and ``experiment.yaml`` in the
user's folder; after a lost ``split.json`` (and new scans in the data root) a grown
experiment silently drew another split for its new runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hostile_helpers import snapshot


def _experiment(tmp_path: Path, config_file, repeats: int = 1, root: Path | None = None) -> Path:
    exp = tmp_path / f"exp{repeats}.yaml"
    base = config_file(dataset_root=root) if root else config_file()
    exp.write_text(yaml.safe_dump({"base": str(base), "grid": {"repeats": repeats}}))
    return exp


BAGLS_SPLIT = {"version": 1, "dataset": "bagls", "root": "/x", "layout": "bagls", "seed": 0,
               "train": [], "val": [], "test": [], "cases": {}}


@pytest.mark.parametrize("content", [json.dumps(BAGLS_SPLIT), "{not json", ""])
def test_a_foreign_split_file_with_force_is_refused_before_any_write(cli, tmp_path, config_file, content):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "split.json").write_text(content)
    (user / "notes.txt").write_text("my notes")
    before = snapshot(user)
    r = cli("experiment", "--config", _experiment(tmp_path, config_file), "--out", user, "--force",
            "--no-progress")
    r.one_error_line(str(user / "split.json"))
    assert snapshot(user) == before  # no marker, no experiment.yaml, no results


def test_a_damaged_split_file_of_an_experiment_is_refused_before_any_write(cli, tmp_path, config_file):
    exp = _experiment(tmp_path, config_file)
    out = tmp_path / "exp"
    assert cli("experiment", "--config", exp, "--out", out, "--max-runs", "0", "--no-progress").rc == 0
    (out / "split.json").write_text(json.dumps(BAGLS_SPLIT))
    before = snapshot(out)
    grown = _experiment(tmp_path, config_file, repeats=2)
    r = cli("experiment", "--config", grown, "--out", out, "--no-progress")
    r.one_error_line(str(out / "split.json"), "bagls")
    assert snapshot(out) == before  # experiment.yaml still the old one


def test_data_that_cannot_be_split_leaves_no_folder(cli, tmp_path, config_file):
    empty = tmp_path / "no_scans"
    empty.mkdir()
    out = tmp_path / "exp"
    r = cli("experiment", "--config", _experiment(tmp_path, config_file, root=empty), "--out", out,
            "--no-progress")
    assert r.rc == 2 and "Traceback" not in r.err and "medseg: error:" in r.err
    assert not out.exists()


@pytest.mark.slow
def test_a_lost_split_with_finished_runs_is_not_redrawn(cli, tmp_path, config_file, tiny_pancreas):
    root = tmp_path / "pancreas"
    shutil.copytree(tiny_pancreas, root)
    out = tmp_path / "exp"
    assert cli("experiment", "--config", _experiment(tmp_path, config_file, root=root), "--out", out,
               "--no-progress").rc == 0
    (out / "split.json").unlink()  # (a new draw could differ once scans are added to the root)
    before = snapshot(out)
    grown = _experiment(tmp_path, config_file, repeats=2, root=root)
    r = cli("experiment", "--config", grown, "--out", out, "--no-progress")
    r.one_error_line(str(out / "split.json"), "missing", "1 finished run")
    assert snapshot(out) == before
    r = cli("experiment", "--config", grown, "--out", out, "--no-progress", "--force")
    r.one_error_line(str(out / "split.json"), "missing")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["synth", "cache", "run"])
def test_force_never_takes_over_another_medseg_folder(cli, tmp_path, config_file, kind):
    """Found by an independent sweep: --force wrote an experiment into the synthetic dataset
    folder it read (the marker became an experiment's)."""
    from medseg.io import mark_folder

    folder = tmp_path / kind
    folder.mkdir()
    mark_folder(folder, kind)
    (folder / "something").write_text("x")
    before = snapshot(folder)
    r = cli("experiment", "--config", _experiment(tmp_path, config_file), "--out", folder, "--force",
            "--no-progress")
    r.one_error_line(str(folder), f"medseg {kind} folder")
    assert snapshot(folder) == before
