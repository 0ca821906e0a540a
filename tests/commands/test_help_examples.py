"""Every ``--help`` example works when pasted after ``make demo`` (issue 18).

The examples are read from the parsers themselves (every command and subcommand's
epilog). The quick tests check, without running anything, that each example parses,
that every file or folder it reads is one the repository holds, ``make demo`` creates
(:mod:`medseg.demo`'s paths) or an earlier example of the same help writes, and that
everything it writes lies in a folder ``.gitignore`` covers. The slow test builds a
small stand-in for the demo's outputs (the same paths, tiny networks) in a temporary
folder and runs the examples there, all but those that train or run a grid.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from medseg import demo
from medseg.cli import build_parser, main, parse_args

REPO = Path(__file__).resolve().parents[2]

#: what ``make demo`` leaves behind (read from medseg.demo, so the test follows it)
HELDOUT_SCAN = demo.HELDOUT / "Pancreas-CT" / "PANCREAS_0001"
DEMO_RUNS = [demo.RUNS / f"unet_{reg}" for reg in demo.METHODS.values()]
DEMO_PATHS = {demo.DATA, demo.HELDOUT, HELDOUT_SCAN.parent, HELDOUT_SCAN, demo.OUTPUTS,
              demo.OUTPUTS / "predict",
              *DEMO_RUNS, *(r / "checkpoints" / c for r in DEMO_RUNS for c in ("best.ckpt", "last.ckpt"))}
#: argparse destinations that name something read / something written
READS = ("config", "checkpoint", "inputs", "run_dir", "runs", "dir", "root", "experiment")
WRITES = ("out", "output", "split_out")


@dataclass
class Example:
    where: str            #: the help it comes from, e.g. "medseg predict"
    argv: list[str]       #: the words after "medseg"
    redirect: str | None  #: the file of a "> FILE" redirection

    def __str__(self) -> str:
        return f"[{self.where}] medseg {' '.join(self.argv)}"


def _parsers(parser: argparse.ArgumentParser, name: str = "medseg"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for key, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {key}")


def _example_lines(epilog: str) -> list[str]:
    """The command lines of the epilog's "example(s)" block (up to its first blank line),
    continuation lines joined; the block's prose lines (not starting with "  medseg") skipped."""
    lines, block, current = [], False, ""
    for raw in epilog.splitlines():
        if raw.startswith("example"):
            block = True
            continue
        if block and not raw.strip():
            break
        if block and (current or raw.startswith("  medseg ")):
            current += " " + raw.strip().rstrip("\\").strip()
            if not raw.rstrip().endswith("\\"):
                lines.append(current.strip())
                current = ""
    return lines


def _commands(line: str) -> list[tuple[list[str], str | None]]:
    """``a && b > f`` → [(a words, None), (b words, "f")]; comments dropped."""
    out = []
    for part in line.split("&&"):
        words = shlex.split(part, comments=True)
        redirect = None
        if ">" in words:
            i = words.index(">")
            words, redirect = words[:i], words[i + 1]
        out.append((words, redirect))
    return out


def help_examples() -> list[list[Example]]:
    """Each help's examples, in order (a help's examples may build on each other)."""
    helps = []
    for name, parser in _parsers(build_parser()):
        examples = []
        for line in _example_lines(parser.epilog or ""):
            for words, redirect in _commands(line):
                assert words[0] == "medseg", (name, line)
                examples.append(Example(name, words[1:], redirect))
        if examples:
            helps.append(examples)
    return helps


def _namespace(example: Example) -> argparse.Namespace:
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            return parse_args(build_parser(), example.argv)
    except SystemExit:
        pytest.fail(f"{example}: does not parse: {err.getvalue().strip()}")


def _paths(ns: argparse.Namespace, dests: tuple[str, ...]) -> list[Path]:
    found = []
    for dest in dests:
        value = getattr(ns, dest, None)
        for v in value if isinstance(value, list) else [value]:
            if v is not None and not isinstance(v, (bool, int, float)) and v not in ("best", "last"):
                found.append(Path(v))  # --checkpoint best|last of evaluate/drops: not a path
    return found


def _override_paths(ns: argparse.Namespace) -> list[Path]:
    """Files named by ``key=value`` overrides (``data.split_file=…``): read."""
    return [Path(o.split("=", 1)[1]) for o in getattr(ns, "overrides", []) or []
            if o.split("=", 1)[0].endswith(("_file", ".root"))]


def _outputs(example: Example, ns: argparse.Namespace) -> list[Path]:
    """What the example writes (the default folders of train and experiment stand for theirs)."""
    outputs = _paths(ns, WRITES) + ([Path(example.redirect)] if example.redirect else [])
    if ns.command == "train" and not getattr(ns, "out", None):
        outputs.append(Path("runs/x"))  # the default run folder: runs/<dataset>_…
    if ns.command == "experiment" and not getattr(ns, "out", None):
        outputs.append(Path("experiments/x"))
    return outputs


def _ignored(path: Path) -> bool:
    rc = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(path)], cwd=REPO).returncode
    return rc == 0


ALL = [e for examples in help_examples() for e in examples]


def test_every_command_has_examples():
    names = {e.where for e in ALL}
    for name, parser in _parsers(build_parser()):
        subcommands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if not subcommands or name == "medseg":
            assert name in names, f"{name} --help has no runnable example"


@pytest.mark.parametrize("examples", help_examples(), ids=lambda ex: ex[0].where.replace(" ", "_"))
def test_examples_read_what_make_demo_leaves_and_write_where_git_ignores(examples):
    written: list[Path] = []
    for example in examples:
        ns = _namespace(example)
        for path in _paths(ns, READS) + _override_paths(ns):
            known = (REPO / path).exists() or path in DEMO_PATHS or any(
                path == w or w in path.parents for w in written)
            assert known, f"{example}: reads {path}, which neither the repository nor make demo " \
                          "nor an earlier example provides"
        outputs = _outputs(example, ns)
        for path in outputs:
            assert not path.is_absolute() and _ignored(path), \
                f"{example}: writes {path}, which .gitignore does not cover"
        written.extend(outputs)


def test_the_demo_paths_are_what_the_demo_writes():
    """The demo's own constants (the quick test above trusts them)."""
    assert demo.DATA == Path("data/synthetic/pancreas")
    assert demo.HELDOUT == Path("data/synthetic/pancreas_heldout")
    assert demo.RUNS == Path("runs/demo") and set(demo.METHODS.values()) == {"none", "heuristic"}
    assert demo.OUTPUTS == Path("outputs/demo")


# --------------------------------------------------------------------------- running them

TINY = ["model.base_channels=4", "model.depth=3", "train.epochs=1", "train.batch_size=16",
        "train.progress_bar=false", "eval.batch_size=48"]


def _skipped(argv: list[str]) -> bool:
    """Examples that train or run a grid (minutes each), and BAGLS synthesis (data of its own)."""
    cmd = argv[0]
    if cmd in ("train", "report", "bench") or (cmd == "experiment" and "--dry-run" not in argv):
        return True
    return argv[:3] == ["data", "synth", "bagls"] or argv[:3] == ["data", "check", "bagls"]


def _small_scans(root: Path) -> None:
    from medseg.data import synth_pancreas

    synth_pancreas(root / demo.DATA, layout="tcia", cases=12, size=48, slices=12, seed=0, force=True)


def _make_demo_stand_in(root: Path) -> None:
    """make demo's outputs in small: the same paths, small scans, tiny one-epoch networks."""
    from medseg.data import synth_pancreas

    (root / "configs").symlink_to(REPO / "configs")
    _small_scans(root)
    synth_pancreas(root / demo.HELDOUT, layout="tcia", cases=1, size=48, slices=12, seed=1000)
    for reg, run in zip(demo.METHODS.values(), DEMO_RUNS):
        assert main(["train", "--config", demo.CONFIG, f"regularizer.name={reg}", "--out", str(run),
                     "--no-progress", *TINY]) == 0
    assert main(["predict", "--checkpoint", str(DEMO_RUNS[-1] / "checkpoints" / "best.ckpt"),
                 "--output", str(demo.OUTPUTS / "predict"), "--overlay", "--no-progress",
                 str(HELDOUT_SCAN)]) == 0


@pytest.mark.slow
def test_the_examples_run_after_a_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _make_demo_stand_in(tmp_path)
    capsys.readouterr()
    ran = []
    for examples in help_examples():
        new, written, unmade = [], [], []  # each help's examples run as if pasted after the demo
        for example in examples:
            ns = _namespace(example)
            reads = _paths(ns, READS) + _override_paths(ns)
            if _skipped(example.argv) or any(p == u or u in p.parents for p in reads for u in unmade):
                unmade += _outputs(example, ns)  # and what reads them is skipped too
                continue
            written += _outputs(example, ns)
            new += [p for p in written if not p.exists()]
            rc = main(example.argv)
            out, err = capsys.readouterr()
            assert rc == 0, f"{example}: exit {rc}\n{err[-2000:]}"
            if example.redirect:
                Path(example.redirect).write_text(out)
            ran.append(example.argv[0])
        for path in new:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if demo.DATA in written:  # the demo's data rewritten at full size: small again (speed)
            _small_scans(tmp_path)
    assert {"predict", "evaluate", "drops", "coadapt", "data", "config"} <= set(ran)
    shutil.rmtree(tmp_path / "data" / "cache", ignore_errors=True)
