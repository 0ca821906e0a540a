"""The co-adaptation test (medseg.experiments.coadapt): zeroing feature maps before model.head."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli import main
from medseg.errors import MedsegError

from medseg.experiments.coadapt import (COLUMNS, RunEvaluator, ZeroChannels, channel_order, coadapt_run,
                                        discover_runs, n_dropped, parse_fractions)


@pytest.fixture
def grid_run(tiny_grid) -> Path:
    """A trained run of the tiny grid (Heuristic Dropout, repeat 0). Read-only."""
    return tiny_grid[0] / "runs" / "pancreas" / "unet" / "heuristic" / "repeat0"


def test_hook_zeroes_exactly_the_chosen_channels():
    x = torch.randn(2, 5, 3, 3)
    (y,) = ZeroChannels(5, [1, 3])(None, (x,))
    assert torch.equal(y[:, [1, 3]], torch.zeros(2, 2, 3, 3))
    assert torch.equal(y[:, [0, 2, 4]], x[:, [0, 2, 4]])  # no rescaling of the kept maps


def test_channel_draws_are_seeded_and_nested():
    a, b = channel_order(16, seed=0, draw=0), channel_order(16, seed=0, draw=0)
    assert np.array_equal(a, b) and sorted(a) == list(range(16))
    assert not np.array_equal(a, channel_order(16, seed=0, draw=1))
    sets = [set(a[:n_dropped(f, 16)]) for f in (0.0, 0.2, 0.5, 0.9)]
    assert [len(s) for s in sets] == [0, 3, 8, 14]
    assert sets[0] <= sets[1] <= sets[2] <= sets[3]
    assert parse_fractions("0.5,0,0.25") == [0.0, 0.25, 0.5]
    with pytest.raises(MedsegError, match="--fractions"):
        parse_fractions("0,1.5")


@pytest.mark.slow
def test_fraction_zero_reproduces_the_runs_own_test_dice(grid_run):
    (info,) = discover_runs([grid_run])
    rows = coadapt_run(info, [0.0, 0.5, 1.0], draws=2, seed=0)
    assert len(rows) == 6 and list(rows[0]) == COLUMNS
    metrics = json.loads((grid_run / "metrics.json").read_text())
    zero = [r for r in rows if r["fraction"] == 0.0]
    assert all(r["n_dropped"] == 0 for r in zero)
    assert all(r["dice"] == metrics["dice_mean"] and r["iou"] == metrics["iou_mean"] for r in zero)
    channels = rows[0]["channels"]
    assert {r["n_dropped"] for r in rows if r["fraction"] == 1.0} == {channels}
    assert (info.regularizer, info.params, info.repeat, info.seed) == ("heuristic", "{}", 0, 0)


@pytest.mark.slow
def test_zeroing_maps_equals_zeroing_the_heads_weights(grid_run):
    """The hook acts on the input of the output layer: dropping maps S gives the same
    logits (and scores) as a head whose weights for S are zero."""
    ev = RunEvaluator(grid_run)
    model, head = ev.module.model.eval(), ev.module.model.head
    dropped = list(range(0, ev.channels, 2))
    x = next(iter(ev.loader))["image"][:6]
    with torch.no_grad():
        plain = model(x)
        handle = head.register_forward_pre_hook(ZeroChannels(ev.channels, dropped))
        hooked = model(x)
        handle.remove()
    scored = ev.score(tuple(dropped))
    with torch.no_grad():
        head.weight[:, dropped] = 0.0
        pruned = model(x)
    assert not torch.equal(hooked, plain)
    assert torch.equal(hooked, pruned)
    again = ev.score(())
    assert (scored["dice_mean"], scored["pooled_dice"]) == (again["dice_mean"], again["pooled_dice"])


@pytest.mark.slow
def test_cli_writes_csv_and_plot_and_refuses_to_overwrite(grid_run, tmp_path, capsys):
    out = tmp_path / "co"
    args = ["coadapt", str(grid_run), "--fractions", "0,0.5", "--draws", "2", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    with open(out / "coadapt.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and list(rows[0]) == COLUMNS
    assert {r["run"] for r in rows} == {str(grid_run)}
    assert (out / "coadapt.png").stat().st_size > 1000 and (out / "coadapt.svg").is_file()
    assert main(args) == 2
    assert "coadapt.csv: exists (use --force" in capsys.readouterr().err
    assert main(["coadapt", str(grid_run), "--no-progress"]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(["coadapt", str(tmp_path), "--out", str(out), "--force"]) == 2
    assert "neither a run folder" in capsys.readouterr().err
