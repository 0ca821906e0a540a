"""Fixtures of the hostile-input suite: tiny datasets to damage, a CLI runner, file systems.

Every case runs ``medseg.cli.main([...])`` in-process (``cli``) and checks what a
user would see: the exit code, one ``medseg: error:`` line naming the file, no
traceback. Damaged datasets are copies of a tiny synthetic one (3 scans of
32×32×6, 6 BAGLS frames), made once per session. Full and read-only file systems
are small tmpfs mounts where this process may mount (root); elsewhere those cases
are skipped and the injected-OSError cases cover the same code paths.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from hostile_helpers import tiny_run_config


class CliResult:
    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err

    def one_error_line(self, *names: str, rc: int = 2) -> str:
        """Assert: exit ``rc``, exactly one stderr line ``medseg: error: …`` naming ``names``."""
        assert self.rc == rc, (self.rc, self.err)
        assert "Traceback" not in self.err and "Traceback" not in self.out
        # a progress bar redraws its line with \r: what stays on screen follows the last \r
        lines = [ln.split("\r")[-1] for ln in self.err.split("\n")]
        lines = [ln for ln in lines if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("medseg: error: "), self.err
        for n in names:
            assert str(n) in lines[0], (n, lines[0])
        return lines[0]


@pytest.fixture
def cli(capsys):
    """``cli(*argv)`` → :class:`CliResult` of ``medseg.cli.main(argv)`` run in this process."""
    from medseg.cli import main

    def run(*argv) -> CliResult:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run




@pytest.fixture(scope="session")
def tiny_pancreas(tmp_path_factory) -> Path:
    from medseg.data import synth_pancreas

    return Path(synth_pancreas(tmp_path_factory.mktemp("hostile") / "pancreas", cases=3, size=32,
                               slices=6, seed=0))


@pytest.fixture(scope="session")
def tiny_bagls(tmp_path_factory) -> Path:
    from medseg.data import synth_bagls

    return Path(synth_bagls(tmp_path_factory.mktemp("hostile") / "bagls", frames=4, test_frames=2, seed=0))


@pytest.fixture
def pancreas_copy(tiny_pancreas, tmp_path) -> Path:
    """A writable copy of the tiny Pancreas-CT set (TCIA layout) to damage."""
    return Path(shutil.copytree(tiny_pancreas, tmp_path / "pancreas"))


@pytest.fixture
def bagls_copy(tiny_bagls, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_bagls, tmp_path / "bagls"))






@pytest.fixture
def config_file(tmp_path, tiny_pancreas):
    """``config_file(**sections)`` → a run config YAML for the tiny set (tiny model, 1 epoch)."""
    import yaml

    def make(name: str = "cfg.yaml", dataset_root: Path | None = None, **extra) -> Path:
        cfg = {"data": {"dataset": "pancreas", "root": str(dataset_root or tiny_pancreas),
                        "num_cases": 3, "split": [1, 1, 1], "size": [32, 32],
                        "cache_dir": str(tmp_path / "cache")},
               "model": {"base_channels": 2, "depth": 2},
               "train": {"epochs": 1, "batch_size": 4, "progress_bar": False, "num_threads": 1}}
        for section, values in extra.items():
            cfg.setdefault(section, {}).update(values)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


# ----------------------------------------------------------------------------- file systems
def _can_mount() -> bool:
    probe = Path("/tmp") / f"medseg-mount-probe-{uuid.uuid4().hex[:8]}"
    probe.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], capture_output=True)
        return ok
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@pytest.fixture(scope="session")
def can_mount() -> bool:
    return _can_mount()


@pytest.fixture
def small_fs(tmp_path, can_mount):
    """``small_fs(size="256k", readonly=False)`` → a fresh tmpfs mount point (unmounted after)."""
    if not can_mount:
        pytest.skip("cannot mount a tmpfs here (not root); the injected-OSError cases cover this")
    mounts = []

    def make(size: str = "256k", readonly: bool = False) -> Path:
        point = tmp_path / f"fs{len(mounts)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], check=True)
        mounts.append(point)
        return point

    yield make
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)




# ----------------------------------------------------------------------------- trained runs


@pytest.fixture(scope="session")
def tiny_run(tiny_pancreas, tmp_path_factory) -> Path:
    """A trained one-epoch run of the tiny set (2-channel U-Net). Copy before changing it."""
    from medseg.training.run import train_run

    base = tmp_path_factory.mktemp("hostile_runs")
    run = base / "run"
    train_run(tiny_run_config(tiny_pancreas, base / "cache"), run, progress=False)
    return run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def tiny_bagls_run(tiny_bagls, tmp_path_factory) -> Path:
    """A trained one-epoch BAGLS run (frames 32×32), for checkpoints from the wrong dataset."""
    from medseg.config import validate
    from medseg.training.run import train_run

    base = tmp_path_factory.mktemp("hostile_runs")
    cfg = validate({"data": {"dataset": "bagls", "root": str(tiny_bagls), "train_frames": 2, "val_frames": 2,
                             "size": [32, 32], "cache_dir": str(base / "cache")},
                    "model": {"base_channels": 2, "depth": 2},
                    "train": {"epochs": 1, "batch_size": 2, "progress_bar": False, "num_threads": 1,
                              "accelerator": "cpu"}})
    train_run(cfg, base / "bagls_run", progress=False)
    return base / "bagls_run"
