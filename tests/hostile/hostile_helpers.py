"""Plain helpers of the hostile-input suite (fixtures live in ``conftest.py``).

A module with its own name: ``from conftest import …`` resolves to whichever
``conftest`` pytest imported last, which differs between a full and a partial run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path → bytes): 'nothing overwritten or lost'."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def series_files(root: Path, patient: str = "PANCREAS_0001") -> list[Path]:
    """The DICOM slices of one patient of a TCIA-layout copy, in file name order."""
    return sorted((root / "Pancreas-CT" / patient).rglob("*.dcm"))


def edit_dicom(path: Path, **tags) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    for tag, value in tags.items():
        setattr(ds, tag, value)
    ds.save_as(path)


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` up to the last byte (unbuffered writes)."""
    import os

    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def tiny_run_config(root: Path, cache: Path, **extra) -> dict:
    from medseg.config import validate

    cfg = {"data": {"dataset": "pancreas", "root": str(root), "num_cases": 3, "split": [1, 1, 1],
                    "size": [32, 32], "cache_dir": str(cache)},
           "model": {"base_channels": 2, "depth": 2},
           "train": {"epochs": 1, "batch_size": 4, "progress_bar": False, "num_threads": 1,
                     "accelerator": "cpu"}}
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return validate(cfg)


def untrained_checkpoints(folder: Path) -> dict[str, Path]:
    """Untrained tiny checkpoints (milliseconds) in ``folder``: a CT one and a frame (BAGLS) one."""
    from medseg.bench.predict import make_checkpoint
    from medseg.config import load_config

    configs = Path(__file__).resolve().parents[2] / "configs" / "cpu"
    out = {}
    for name, base in (("ct", "pancreas_unet.yaml"), ("frame", "bagls_unet.yaml")):
        cfg = load_config(configs / base, [f"data.root={folder}", "data.size=[32,32]", "model.base_channels=2",
                                           "model.depth=2", "eval.batch_size=8"])
        out[name] = make_checkpoint(cfg, folder / f"{name}.ckpt")
    return out


def resume_config(run: Path, folder: Path, **train) -> Path:
    """The run's own config as ``folder/resume.yaml``, with ``train`` overrides (to resume it)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"].update(train)
    f = folder / "resume.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f
