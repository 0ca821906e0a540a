"""The README as a newcomer meets it (issue 18): its command table lists every subcommand, its
commands write only under folders .gitignore covers, and the synthetic voxel sizes it states
are the ones the generator draws."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from medseg.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _table_commands() -> list[str]:
    """The first cell of every row of the README's command table, without its formatting."""
    section = README.split("## The command line", 1)[1].split("\n## ", 1)[0]
    return [re.sub(r"\\\|", "|", m) for m in re.findall(r"^\| `(medseg [^`]*)` \|", section, re.M)]


def test_the_command_table_lists_every_subcommand():
    rows = _table_commands()
    for name, sub in _subparsers(build_parser()).items():
        jobs = _subparsers(sub)
        if name == "data":
            for job in jobs:
                assert any(r.startswith(f"medseg data {job} ") for r in rows), f"medseg data {job}"
        elif name == "config":
            assert any(r.startswith("medseg config show") for r in rows)
        else:
            assert any(r == f"medseg {name}" or r.startswith(f"medseg {name} ") for r in rows), name


def _readme_commands() -> list[str]:
    """Every ``medseg …`` command of the README's code blocks (continuation lines joined)."""
    commands, inside, current = [], False, ""
    for line in README.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        current += " " + line.strip().rstrip("\\")
        if not line.rstrip().endswith("\\"):
            if current.strip().startswith(("medseg ", "srun medseg ")):
                commands.append(current.strip())
            current = ""
    return commands


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode == 0


def _placeholder(value: str) -> bool:
    """RUN, OUT, "$OUT", SCAN_DIR: a name the reader chooses."""
    return value.startswith("$") or bool(re.match(r"^[A-Z][A-Z_]*(/|$)", value))


def test_readme_commands_write_only_under_ignored_folders():
    found = 0
    for command in _readme_commands():
        words = shlex.split(command, comments=True)
        for option in ("--out", "--output", "--split-out"):
            if option in words:
                value = words[words.index(option) + 1]
                found += 1
                assert _placeholder(value) or _ignored(value), f"{command}: writes {value}"
        if ">" in words:
            value = words[words.index(">") + 1]
            assert _placeholder(value) or _ignored(value), f"{command}: writes {value}"
    assert found >= 3


def test_the_slurm_log_is_ignored():
    assert _ignored("slurm-123.out")


def _measured_spacings(cases: int = 12) -> tuple[list[float], list[float]]:
    sp = importlib.import_module("medseg.data.synth_pancreas")  # medseg.data.synth_pancreas: a function

    geometries = [sp._acquisition_grid(sp._rng(0, i, 128, 48), 128, 48)[0] for i in range(cases)]
    return ([g.spacing[0] for g in geometries] + [g.spacing[1] for g in geometries],
            [g.spacing[2] for g in geometries])


def test_the_stated_voxel_sizes_are_the_generated_ones():
    from medseg.data import pancreas_phantom

    in_plane, between = _measured_spacings()
    assert pancreas_phantom(3).geometry.spacing[2] == between[3]  # the helpers are the generator's
    stated = f"square pixels of {min(in_plane):.2f}–{max(in_plane):.2f} mm and " \
             f"{min(between):.2f}–{max(between):.2f} mm between slices"
    assert stated in " ".join(README.split()), stated


@pytest.mark.parametrize("path", ["outputs/predict", "runs/demo", "experiments/quick", "bench/x.json",
                                  "data/synthetic/pancreas"])
def test_the_folders_the_examples_write_are_ignored(path):
    assert _ignored(path)
