"""Checkpoints are untrusted: they are opened with ``torch.load(weights_only=True)``.

A pickle that carries code (an object whose ``__reduce__`` calls ``os.system``)
must be refused by ``load_checkpoint``, ``medseg predict`` and ``medseg evaluate``
with a one-line error — and the code must never run (the marker file it would
create stays absent). A real medseg checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch
import json

import yaml

from medseg.cli import main
from medseg.errors import CheckpointError
from medseg.training.checkpoint import build_model_from_checkpoint, load_checkpoint, medseg_metadata


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _evil_checkpoint(run: Path, path: Path, marker: Path) -> Path:
    """The run's real checkpoint with a code-carrying object slipped into its metadata."""
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["medseg"]["note"] = _Payload(marker)
    torch.save(ckpt, path)
    return path


def _one_line_error(rc: int, err: str, *names: str) -> str:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg: error: "), err
    assert "Traceback" not in err
    for n in names:
        assert n in lines[0]
    return lines[0]


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    # control: without weights_only the same bytes DO run the command
    marker = tmp_path / "ran"
    data = pickle.dumps({"x": _Payload(marker)})
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.slow
def test_load_checkpoint_refuses_code(pancreas_run, tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(pancreas_run, tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(evil)
    msg = str(exc.value)
    assert str(evil) in msg and "refused" in msg and "weights_only=True" in msg
    assert "\n" not in msg
    assert not marker.exists()


def test_plain_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "legacy.ckpt"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": {}, "medseg": _Payload(marker)}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.slow
def test_predict_cli_refuses_code(pancreas_run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(pancreas_run, tmp_path / "evil.ckpt", marker)
    split = json.loads((pancreas_run / "split.json").read_text())
    image = split["cases"][split["test"][0]]["image"]
    out = tmp_path / "out"
    rc = main(["predict", "--no-progress", "--checkpoint", str(evil), "--output", str(out), image])
    _one_line_error(rc, capsys.readouterr().err, str(evil), "refused")
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_cli_refuses_code(pancreas_run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _evil_checkpoint(pancreas_run, tmp_path / "evil.ckpt", marker)
    before = {n: (pancreas_run / n).read_bytes() for n in ("metrics.json", "cases.csv")}
    rc = main(["evaluate", str(pancreas_run), "--checkpoint", str(evil), "--no-progress"])
    _one_line_error(rc, capsys.readouterr().err, str(evil), "refused")
    assert not marker.exists()
    assert {n: (pancreas_run / n).read_bytes() for n in before} == before


@pytest.mark.slow
def test_real_checkpoint_loads_with_weights_only(pancreas_run):
    from medseg.config import validate

    path = pancreas_run / "checkpoints" / "best.ckpt"
    raw = torch.load(path, map_location="cpu", weights_only=True)  # must not raise
    assert "state_dict" in raw and isinstance(raw["medseg"], dict)
    cfg = validate(yaml.safe_load((pancreas_run / "config.yaml").read_text()))
    ckpt = load_checkpoint(path)
    assert ckpt["medseg"] == medseg_metadata(cfg)
    pre = ckpt["medseg"]["preprocessing"]
    assert pre["dataset"] == "pancreas" and pre["size"] == list(cfg["data"]["size"])
    assert pre["window"] == list(cfg["data"]["window"])
    model, meta = build_model_from_checkpoint(path)
    assert not model.training
    h, w = pre["size"]
    with torch.no_grad():
        out = model(torch.rand(2, pre["channels"], h, w))
    assert out.shape == (2, meta["out_channels"], h, w)


def test_the_best_score_survives_the_run_folders_move(tmp_path, recwarn):
    """A run trains in .<run>.new and is renamed; on --resume Lightning's ModelCheckpoint saw
    another dirpath and dropped best_model_score, so the first resumed epoch replaced best.ckpt
    however bad (found by an independent sweep)."""
    import torch

    from medseg.training.checkpoint import run_model_checkpoint

    staged, final = tmp_path / ".r0.new" / "checkpoints", tmp_path / "r0" / "checkpoints"
    final.mkdir(parents=True)
    saved = {"monitor": "val_dice", "best_model_score": torch.tensor(0.8), "best_model_path": str(staged / "best.ckpt"),
             "current_score": torch.tensor(0.7), "dirpath": str(staged),
             "best_k_models": {str(staged / "best.ckpt"): torch.tensor(0.8)},
             "kth_best_model_path": str(staged / "best.ckpt"), "kth_value": torch.tensor(0.8),
             "last_model_path": ""}
    cb = run_model_checkpoint(dirpath=final, filename="best", monitor="val_dice", mode="max", save_top_k=1)
    cb.load_state_dict(dict(saved))
    assert float(cb.best_model_score) == pytest.approx(0.8) and cb.best_model_path == str(final / "best.ckpt")
    assert list(cb.best_k_models) == [str(final / "best.ckpt")]
    assert not [w for w in recwarn if "dirpath has changed" in str(w.message)]
    from pytorch_lightning.callbacks import ModelCheckpoint

    plain = ModelCheckpoint(dirpath=final, filename="best", monitor="val_dice", mode="max", save_top_k=1)
    plain.load_state_dict(dict(saved))
    assert plain.best_model_score is None  # what Lightning alone does (the control)
