"""``medseg bench`` plumbing: tiny --quick runs and the JSON they write (no timing asserted)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medseg.bench import BenchOptions, sections
from medseg.bench.measure import paired_times, peak_extra_bytes
from medseg.cli import main


def run_bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "results.json"
    code = main(["bench", "--quick", "--repeats", "1", "--out", str(out), *args])
    assert code == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_quick_bench_writes_rows_for_every_key_and_shape(tmp_path, capsys):
    keys = ["heuristic", "dropout", "stochastic_depth", "cutout"]
    doc = run_bench(tmp_path, "--section", "regularizers,unet_step", "--only", ",".join(keys))
    assert doc["meta"]["sections"] == ["regularizers", "unet_step"]
    assert doc["meta"]["quick"] is True
    assert doc["summary"] == {"targets_checked": 0, "targets_failed": [], "passed": None}

    reg_rows = [r for r in doc["rows"] if r["section"] == "regularizers"]
    assert [(r["key"], tuple(r["shape"])) for r in reg_rows] == [
        (k, s) for s in [(2, 8, 16, 16), (2, 16, 8, 8)] for k in keys] + [
        ("heuristic", (1, 4, 4, 8, 8))]  # the 3D row (issue 13)
    for r in reg_rows:
        for field in ("name", "value", "unit", "time_s", "reference_time_s", "peak_extra_bytes",
                      "peak_extra_x_input", "input_bytes", "placement", "checks", "note"):
            assert field in r, field
        assert r["passed"] is None and r["checks"] == {}
        assert math.isfinite(r["value"]) and r["time_s"] > 0 and r["reference_time_s"] > 0
        assert len(r["time_runs_s"]) == len(r["reference_runs_s"]) == 1
        assert isinstance(r["peak_extra_bytes"], int) and r["peak_extra_bytes"] >= 0
    by_key = {r["key"]: r for r in reg_rows if r["shape"] == [2, 8, 16, 16]}
    assert by_key["heuristic"]["placement"] == "slot"
    # its output alone is one input-sized tensor
    assert by_key["heuristic"]["peak_extra_bytes"] >= by_key["heuristic"]["input_bytes"]
    assert by_key["stochastic_depth"]["placement"] == "residual"
    assert "overhead" in by_key["stochastic_depth"]["unit"]
    assert by_key["cutout"]["placement"] == "input"
    assert by_key["cutout"]["input_shape"] == [2, 1, 16, 16]
    assert "input" in by_key["cutout"]["note"]

    step_rows = [r for r in doc["rows"] if r["section"] == "unet_step"]
    assert [r["key"] for r in step_rows] == keys
    for r in step_rows:
        assert r["passed"] is None and r["time_s"] > 0 and r["baseline_time_s"] > 0

    printed = capsys.readouterr().out
    assert "== regularizers" in printed and "== unet_step" in printed
    assert "mem × input" in printed and "PASS" not in printed and "FAIL" not in printed


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("keep")
    args = ["bench", "--quick", "--repeats", "1", "--section", "regularizers", "--only", "none",
            "--out", str(out)]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "keep"
    assert main(args + ["--force"]) == 0
    assert json.loads(out.read_text())["rows"][0]["key"] == "none"


@pytest.mark.parametrize("args,message", [
    (["--section", "nope"], "unknown section"),
    (["--only", "heuristic,bogus"], "bogus"),
    (["--repeats", "0"], "--repeats"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    out = tmp_path / "r.json"
    assert main(["bench", "--quick", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medseg: error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_sections_registry_lists_the_sections():
    names = list(sections())
    assert names[:2] == ["regularizers", "unet_step"]
    assert all(s.description for s in sections().values())
    assert BenchOptions(quick=True).repeats_or(5) == 1
    assert BenchOptions(repeats=4, quick=True).repeats_or(5) == 4


def test_peak_extra_bytes_counts_allocations_made_during_the_call():
    x = torch.randn(64, 1024)
    nbytes = x.numel() * x.element_size()
    assert peak_extra_bytes(lambda: x.clone()) == nbytes

    def two_alive_then_one():
        a = x.clone()
        b = x.clone()
        del a
        return b, x.clone()

    assert peak_extra_bytes(two_alive_then_one) == 2 * nbytes
    assert peak_extra_bytes(lambda: None) == 0


def test_paired_times_structure():
    calls = {"ref": 0, "cand": 0}

    def ref():
        calls["ref"] += 1

    def cand():
        calls["cand"] += 1

    result = paired_times(ref, cand, repeats=3, warmup=1)
    assert calls == {"ref": 4, "cand": 4}
    assert len(result["reference_runs_s"]) == len(result["candidate_runs_s"]) == 3
    assert result["ratio"] > 0


def test_summary_counts_each_checked_target():
    from medseg.bench.report import summary

    rows = [
        {"name": "a", "passed": False, "checks": {"time": {"passed": True}, "memory": {"passed": False}}},
        {"name": "b", "passed": True},
        {"name": "c", "passed": None},
    ]
    assert summary(rows) == {"targets_checked": 3, "targets_failed": ["a (memory)"], "passed": False}
    assert summary([{"name": "c", "passed": None}])["passed"] is None


def test_a_failing_section_keeps_the_other_sections_results(tmp_path, monkeypatch, capsys):
    import medseg.bench as bench

    def boom(options):
        raise RuntimeError("section exploded")

    def fine(options):
        return [{"section": "fine", "name": "x", "value": 1.0, "unit": "×", "target": "≤ 2",
                 "passed": True}]

    monkeypatch.setitem(bench._SECTIONS, "boom", bench.Section("boom", "fails", boom))
    monkeypatch.setitem(bench._SECTIONS, "fine", bench.Section("fine", "works", fine))
    out = tmp_path / "r.json"
    assert main(["bench", "--section", "boom,fine", "--out", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["meta"]["errors"] == {"boom": "RuntimeError: section exploded"}
    assert [r["name"] for r in doc["rows"]] == ["x"]
    assert doc["summary"]["passed"] is True
    captured = capsys.readouterr()
    assert "section boom FAILED" in captured.out and "Traceback" in captured.err
