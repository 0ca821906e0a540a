"""Config loading, dotted overrides and validation (medseg.config)."""

from pathlib import Path

import pytest

from medseg.config import load_config, validate
from medseg.config_files import apply_overrides, parse_override
from medseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CPU_CONFIG = CONFIGS / "cpu" / "pancreas_unet.yaml"


@pytest.mark.parametrize("path", sorted((CONFIGS / "cpu").glob("*.yaml")) + sorted((CONFIGS / "paper").glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_run_configs_validate(path):
    cfg = load_config(path)
    assert set(cfg) == {"seed", "data", "model", "regularizer", "train", "eval"}
    assert cfg["model"]["name"] in path.stem


def test_paper_configs_follow_the_protocol():
    p = load_config(CONFIGS / "paper" / "pancreas_unet.yaml")
    assert p["train"]["epochs"] == 100 and p["data"]["size"] == [512, 512]
    assert p["data"]["split"] == [8, 2, 2] and p["data"]["window"] == [-100.0, 240.0]
    assert (p["train"]["lr"], p["train"]["betas"], p["train"]["eps"]) == (1e-3, [0.9, 0.999], 1e-8)
    b = load_config(CONFIGS / "paper" / "bagls_unet3plus.yaml")
    assert b["train"]["epochs"] == 30 and b["train"]["loss"] == "ce_dice_ssim"
    assert b["data"]["train_frames"] == 3000 and b["data"]["size"] == [512, 256]


def test_overrides_are_parsed_as_yaml_and_applied():
    cfg = load_config(CONFIGS / "cpu" / "pancreas_unet.yaml",
                      ["train.epochs=2", "regularizer.name=heuristic", "regularizer.k=3",
                       "data.size=96", "train.lr=1e-4", "eval.empty_score=null"])
    assert cfg["train"]["epochs"] == 2
    assert cfg["regularizer"] == {"name": "heuristic", "k": 3}
    assert cfg["data"]["size"] == [96, 96]
    assert cfg["train"]["lr"] == pytest.approx(1e-4)
    assert cfg["eval"]["empty_score"] is None


def test_parse_override_lists_and_errors():
    assert parse_override("grid.regularizers=[none,heuristic]") == (["grid", "regularizers"], ["none", "heuristic"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("train..epochs=1")


@pytest.mark.parametrize("override, key", [
    ("train.epoch=3", "train.epoch"),
    ("modle.name=unet", "modle"),
    ("data.colour=1", "data.colour"),
])
def test_unknown_keys_are_rejected_with_the_key_named(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(CONFIGS / "cpu" / "pancreas_unet.yaml", [override])


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"),
    ("train.epochs=two", "train.epochs"),
    ("train.batch_size=2.5", "train.batch_size"),
    ("model.name=vnet", "model.name"),
    ("data.dataset=lung", "data.dataset"),
    ("data.window=[240,-100]", "data.window"),
    ("data.split=[8,2]", "data.split"),
    ("data.split=[8,0,2]", "data.split"),
    ("data.augment=maybe", "data.augment"),
    ("eval.empty_score=2", "eval.empty_score"),
    ("data.split=[8,2,4]", "data.split"),  # 14 scans > num_cases 12
])
def test_bad_values_are_rejected_with_the_key_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(CONFIGS / "cpu" / "pancreas_unet.yaml", [override])


def test_regularizer_params_are_checked_by_the_registry():
    with pytest.raises(ConfigError, match="no parameter 'kk'"):
        load_config(CONFIGS / "cpu" / "pancreas_unet.yaml", ["regularizer.name=heuristic", "regularizer.kk=1"])
    with pytest.raises(ConfigError, match="unknown regularizer 'dropall'"):
        load_config(CONFIGS / "cpu" / "pancreas_unet.yaml", ["regularizer.name=dropall"])
    with pytest.raises(ConfigError, match="regularizer"):
        load_config(CONFIGS / "cpu" / "pancreas_unet.yaml", ["regularizer.name=heuristic", "regularizer.rate=1.5"])


def test_required_keys_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        validate({"data": {"dataset": "pancreas"}})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_apply_overrides_does_not_mutate_input():
    raw = {"train": {"epochs": 1}}
    out = apply_overrides(raw, ["train.epochs=4"])
    assert raw["train"]["epochs"] == 1 and out["train"]["epochs"] == 4


def test_typed_view_and_dict_form_agree():
    from medseg.config import RunConfig, typed

    cfg = load_config(CPU_CONFIG, ["regularizer.name=heuristic", "regularizer.k=3", "train.epochs=2"])
    t = typed(cfg)
    assert isinstance(t, RunConfig)
    assert t.train.epochs == 2 and t.regularizer.name == "heuristic" and t.regularizer.params == {"k": 3}
    assert t.as_dict() == cfg  # the dict form is the typed object's, exactly


def test_config_show_documents_every_key(capsys):
    import yaml

    from medseg.cli import main
    from medseg.config import SECTION_TYPES

    assert main(["config", "show", str(CPU_CONFIG), "regularizer.name=dropout", "regularizer.p=0.2"]) == 0
    text = capsys.readouterr().out
    shown = yaml.safe_load(text)
    assert shown == load_config(CPU_CONFIG, ["regularizer.name=dropout", "regularizer.p=0.2"])
    for name, section in SECTION_TYPES.items():
        for sub, doc in section.keys_doc().items():
            assert f"  {sub}: " in text and doc in text
    assert "p: 0.2" in text and "parameter of regularizer 'dropout'" in text
    assert main(["config", "show", str(CPU_CONFIG), "train.epochz=1"]) == 2
    assert "train.epochz" in capsys.readouterr().err


@pytest.mark.parametrize("override, key", [
    ("data.foreground_fraction=1.5", "data.foreground_fraction"),
    ("data.foreground_fraction=abc", "data.foreground_fraction"),
    ("train.lr_schedule=cosine", "train.lr_schedule"),
    ("train.poly_exponent=-1", "train.poly_exponent"),
    ("train.dice_batch=maybe", "train.dice_batch"),
    ("data.folds=0", "data.folds"),
    ("model.foreground_prior=0.9", "model.foreground_prior"),
    ("model.foreground_prior=true", "model.foreground_prior"),
])
def test_recipe_keys_refuse_bad_values_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(CPU_CONFIG, [override])


@pytest.mark.parametrize("value", ["[z]", "[x,x]", "[x,y,z]", "3", "{a: 1}"])
def test_mirror_axes_refuses_other_axes_naming_the_key(value):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [f"data.mirror_axes={value}"], require_data=False)
    assert str(exc.value).startswith("config key 'data.mirror_axes' must be a list of distinct axes")


@pytest.mark.parametrize("value, axes", [("[y,x]", ["x", "y"]), ("[]", []), ("x", ["x"])])
def test_mirror_axes_accepts_subsets_of_x_y(value, axes):
    assert load_config(None, [f"data.mirror_axes={value}"], require_data=False)["data"]["mirror_axes"] == axes


def test_mirror_axes_become_one_flip_per_axis():
    """[x, y]: a flip along the slice width and one along its height, each at p 0.5."""
    from monai.transforms import RandFlipd

    from medseg.data.transforms import train_transforms

    flips = [t for t in train_transforms(True, ["x", "y"]).transforms if isinstance(t, RandFlipd)]
    assert sorted(f.flipper.spatial_axis for f in flips) == [0, 1] and all(f.prob == 0.5 for f in flips)
    assert not [t for t in train_transforms(True, []).transforms if isinstance(t, RandFlipd)]
    (only_x,) = [t for t in train_transforms(True).transforms if isinstance(t, RandFlipd)]
    assert only_x.flipper.spatial_axis == 1
