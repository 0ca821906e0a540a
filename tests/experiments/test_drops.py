"""``medseg drops`` on a tiny trained Heuristic Dropout run, and the report section."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from medseg.cli import main
from medseg.experiments.drops import drops_section, read_drops
from medseg.regularizers.diagnostics import COLUMNS


@pytest.fixture(scope="module")
def heuristic_run(pancreas_cfg, tmp_path_factory):
    """A tiny Pancreas-CT U-Net with Heuristic Dropout, 1 epoch. Treat as read-only."""
    from medseg.training.run import train_run

    cfg = {**pancreas_cfg, "regularizer": {"name": "heuristic", "rate": 0.25}}
    run_dir = tmp_path_factory.mktemp("runs") / "pancreas_heuristic"
    train_run(cfg, run_dir, progress=False)
    return run_dir


@pytest.mark.slow
def test_drops_writes_one_row_per_slot(heuristic_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(heuristic_run, run)
    assert main(["drops", str(run), "--no-progress"]) == 0
    assert (run / "drops.png").stat().st_size > 0
    rows = read_drops(run / "drops.csv")
    with open(run / "drops.csv", newline="") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    # U-Net depth 3: 3 encoder stages + bottleneck + 3 decoder stages, one slot each
    assert len(rows) == 7
    assert all(r["slot"].endswith(".reg") for r in rows)
    for r in rows:
        assert r["dropped_per_sample"] == round(0.25 * r["channels"])
        assert 0.0 <= r["dead_fraction"] <= r["low_variance_fraction"] <= 1.0
        assert r["spatial"].count("×") == 1
        assert math.isnan(r["selection_entropy"]) or 0.0 <= r["selection_entropy"] <= 1.0
    assert "drop statistics:" in capsys.readouterr().out
    # nothing overwritten without --force, and the file is untouched
    before = (run / "drops.csv").read_text()
    assert main(["drops", str(run), "--no-progress"]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["drops", str(run), "--split", "test", "--checkpoint", "last", "--no-progress"]) == 0
    assert (run / "drops_test.csv").is_file() and (run / "drops.csv").read_text() == before
    assert main(["drops", str(run), "--force", "--no-progress"]) == 0
    assert (run / "drops.csv").read_text() == before  # deterministic


@pytest.mark.slow
def test_drops_refuses_a_run_without_heuristic_dropout(pancreas_run, capsys):
    assert main(["drops", str(pancreas_run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not heuristic" in err[0] and "config.yaml" in err[0]
    assert not (pancreas_run / "drops.csv").exists()


def test_drops_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["drops", str(tmp_path), "--no-progress"]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_report_section_from_an_experiment_folder(heuristic_run, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(heuristic_run, exp / "runs" / "a")
    assert drops_section(exp) == []  # no results.csv → no section
    header = ["dataset", "model", "regularizer", "params", "repeat", "fold", "seed", "case_id",
              "dice", "iou", "run_dir"]
    params = json.dumps({"rate": 0.25}, sort_keys=True)
    with open(exp / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerow(["pancreas", "unet", "heuristic", params, 0, 0, 0, "c1", 0.5, 0.4, "runs/a"])
    assert drops_section(exp) == []  # the run has no drops.csv yet
    assert main(["drops", str(exp / "runs" / "a"), "--no-progress"]) == 0
    lines = drops_section(exp)
    assert lines[0] == "## What Heuristic Dropout dropped"
    table = [line for line in lines if line.startswith("| `")]
    assert len(table) == 7 and all(line.endswith("| 1 |") for line in table)
