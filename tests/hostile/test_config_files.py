"""Hostile config files and overrides, for every subcommand that reads a config.

Each case: exit 2, one ``medseg: error:`` line naming the config file (or the key),
no traceback, and nothing written (no run folder, no split file, no experiment).
"""

from __future__ import annotations

import pytest

#: name → (file bytes, text the message must contain besides the file name)
BAD_CONFIGS = {
    "random_bytes": (bytes(range(256)) * 3, "not a YAML text file"),
    "nul_bytes": (b"data:\n  root: x\x00y\n", "not valid YAML"),
    "utf16": ("data:\n  dataset: pancreas\n".encode("utf-16"), "not a YAML text file"),
    "list_valued": (b"- data\n- model\n", "must be a YAML mapping"),
    "scalar": (b"just a string\n", "must be a YAML mapping"),
    "bad_indent": (b"data:\n  dataset: pancreas\n root: x\n", "not valid YAML (line"),
    "unclosed_bracket": (b"data:\n  size: [64, 64\n", "not valid YAML (line"),
    "tab_indent": (b"data:\n\tdataset: pancreas\n", "not valid YAML"),
    "duplicate_top": (b"data:\n  dataset: pancreas\ndata:\n  root: x\n", "duplicate key 'data' (line 3"),
    "duplicate_nested": (b"train:\n  epochs: 2\n  epochs: 3\n", "duplicate key 'epochs' (line 3"),
    "python_tag": (b"data: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
}

COMMANDS = {
    "train": lambda cfg, tmp: ["train", "--config", cfg, "--out", tmp / "run", "--no-progress"],
    "experiment": lambda cfg, tmp: ["experiment", "--config", cfg, "--out", tmp / "exp", "--no-progress"],
    "experiment_dry": lambda cfg, tmp: ["experiment", "--config", cfg, "--out", tmp / "exp", "--dry-run"],
    "data_prepare": lambda cfg, tmp: ["data", "prepare", "--config", cfg, "--split-out", tmp / "s.json"],
    "data_split": lambda cfg, tmp: ["data", "split", "--config", cfg, "--out", tmp / "s.json"],
}


def _nothing_written(tmp):
    return not any((tmp / n).exists() for n in ("run", "exp", "s.json", ".run.new"))


@pytest.mark.parametrize("bad", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_config_file(cli, tmp_path, command, bad):
    data, why = BAD_CONFIGS[bad]
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(data)
    r = cli(*COMMANDS[command](cfg, tmp_path))
    line = r.one_error_line(str(cfg))
    if command.startswith("experiment") and why.startswith("must be"):
        assert "mapping" in line
    else:
        assert why in line, line
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_config_file(cli, tmp_path, command):
    cfg = tmp_path / "nope.yaml"
    r = cli(*COMMANDS[command](cfg, tmp_path))
    r.one_error_line(str(cfg), "not found")
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_is_a_folder(cli, tmp_path, command):
    cfg = tmp_path / "folder.yaml"
    cfg.mkdir()
    r = cli(*COMMANDS[command](cfg, tmp_path))
    r.one_error_line(str(cfg))
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("override,key", [
    ("train.epoch=2", "train.epoch"),            # unknown key
    ("train.epochs=two", "train.epochs"),        # wrong type
    ("data.size=[64]", "data.size"),             # wrong length
    ("model.name=resnet", "model.name"),         # not a choice
    ("regularizer.name=nosuch", "nosuch"),       # unknown regularizer
    ("epochs", "key=value"),                     # not an override
])
@pytest.mark.parametrize("command", ["train", "data_prepare", "data_split"])
def test_bad_override(cli, tmp_path, config_file, command, override, key):
    r = cli(*COMMANDS[command](config_file(), tmp_path), override)
    r.one_error_line(key)
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("argv_tail", [
    ["--no-progress", "train.epochs=0"],
    ["train.epochs=0", "--no-progress"],
])
def test_train_override_after_an_option_is_applied(cli, tmp_path, config_file, argv_tail):
    """Overrides anywhere on the line: here train.epochs=0 is invalid, which proves it was read."""
    r = cli("train", "--config", config_file(), "--out", tmp_path / "run", *argv_tail)
    r.one_error_line("train.epochs", ">= 1")


@pytest.mark.parametrize("position", ["before", "between", "after"])
def test_data_split_override_anywhere(cli, tmp_path, config_file, position):
    cfg, out = config_file(), tmp_path / "s.json"
    parts = {"before": ["data.split_seed=7", "--config", cfg, "--out", out],
             "between": ["--config", cfg, "data.split_seed=7", "--out", out],
             "after": ["--config", cfg, "--out", out, "data.split_seed=7"]}[position]
    r = cli("data", "split", *parts)
    assert r.rc == 0, r.err
    import json

    assert json.loads(out.read_text())["seed"] == 7


def test_experiment_dry_run_override_after_option(cli, tmp_path, config_file):
    import yaml

    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"base": str(config_file()), "grid": {"repeats": 1}}))
    r = cli("experiment", "--config", exp, "--out", tmp_path / "e", "--dry-run", "grid.repeats=3")
    assert r.rc == 0, r.err
    assert "3 runs" in r.out


def test_unknown_word_is_still_refused(cli, tmp_path, config_file):
    with pytest.raises(SystemExit) as exc:
        cli("evaluate", tmp_path, "train.epochs=2")
    assert exc.value.code == 2
