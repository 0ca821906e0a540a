"""Run configuration: load YAML, apply dotted ``key=value`` overrides, validate.

A run config has five top-level keys — ``data``, ``model``, ``regularizer``,
``train``, ``eval`` — plus ``seed``. Every key below is documented in
:data:`SCHEMA` with its default; a config file only needs the keys it changes.
``regularizer`` holds ``name`` plus that regularizer's own parameters (checked
against its constructor by the regularizer registry).

Unknown keys and bad values raise :class:`~medseg.errors.ConfigError` naming the
key, e.g. ``config key 'train.epoch' is unknown (train has: batch_size, epochs, …)``.

Example::

    cfg = load_config("configs/cpu/pancreas_unet.yaml",
                      ["regularizer.name=heuristic", "regularizer.k=3"])
    cfg["train"]["epochs"]
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from .errors import ConfigError

# --------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class Field:
    """One config key: its default, a converter that validates, and a docstring."""

    default: Any
    convert: Callable[[str, Any], Any]
    doc: str = ""


def _int(lo: int | None = None, hi: int | None = None, optional: bool = False):
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(f"config key '{key}' must be an integer, got {v!r}")
        try:
            f = float(v)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be an integer, got {v!r}") from None
        if not f.is_integer():
            raise ConfigError(f"config key '{key}' must be an integer, got {v!r}")
        i = int(f)
        if lo is not None and i < lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}, got {i}")
        if hi is not None and i > hi:
            raise ConfigError(f"config key '{key}' must be <= {hi}, got {i}")
        return i

    return convert


def _float(lo: float | None = None, hi: float | None = None, optional: bool = False):
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {v!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number, got {v!r}") from None
        if f != f:
            raise ConfigError(f"config key '{key}' must be a number, got NaN")
        if lo is not None and f < lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}, got {f}")
        if hi is not None and f > hi:
            raise ConfigError(f"config key '{key}' must be <= {hi}, got {f}")
        return f

    return convert


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
        return v.lower() in ("true", "yes", "1")
    raise ConfigError(f"config key '{key}' must be true or false, got {v!r}")


def _str(optional: bool = False):
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {v!r}")
        return str(v)

    return convert


def _choice(*choices: Any):
    def convert(key: str, v: Any) -> Any:
        for c in choices:
            if v == c or (isinstance(c, str) and str(v) == c):
                return c
        raise ConfigError(
            f"config key '{key}' must be one of {', '.join(map(str, choices))}; got {v!r}"
        )

    return convert


def _pair(elem: Callable[[str, Any], Any], allow_scalar: bool = False, ordered: bool = False):
    def convert(key: str, v: Any) -> Any:
        if allow_scalar and not isinstance(v, (list, tuple)):
            v = [v, v]
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ConfigError(f"config key '{key}' must be a list of two values, got {v!r}")
        out = [elem(key, x) for x in v]
        if ordered and not out[0] < out[1]:
            raise ConfigError(f"config key '{key}' must be [low, high] with low < high, got {v!r}")
        return out

    return convert


def _distance_or_diagonal(key: str, v: Any) -> Any:
    """``"diagonal"``, a distance >= 0, or null (eval.missing_hd95)."""
    if v == "diagonal":
        return v
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be diagonal, a number or null, got {v!r}") from None
    return _float(lo=0.0, optional=True)(key, v)


def _split(key: str, v: Any) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ConfigError(f"config key '{key}' must be [train, val, test] counts, got {v!r}")
    out = [_int(lo=0)(key, x) for x in v]
    if min(out) < 1:
        raise ConfigError(f"config key '{key}' needs at least one train, one validation (model "
                          f"selection) and one test scan, got {v!r}")
    return out


def _devices(key: str, v: Any) -> Any:
    if v == "auto" or isinstance(v, list):
        return v
    return _int(lo=1)(key, v)


def _limit(key: str, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) or (isinstance(v, str) and "." in v):
        return _float(lo=0.0, hi=1.0)(key, v)
    return _int(lo=1)(key, v)


SCHEMA: dict[str, dict[str, Field] | Field] = {
    "seed": Field(0, _int(lo=0), "seed of the run: weights, augmentation, dropout masks"),
    "data": {
        "dataset": Field(None, _choice("pancreas", "bagls"), "which dataset: pancreas | bagls"),
        "root": Field(None, _str(), "dataset root folder (see data/README.md)"),
        "layout": Field("auto", _choice("auto", "tcia", "msd", "bagls"),
                        "on-disk layout: tcia | msd (Pancreas-CT), bagls; auto detects"),
        "size": Field([128, 128], _pair(_int(lo=8), allow_scalar=True),
                      "slice/frame size [H, W] after resizing (an int means square)"),
        "window": Field([-100.0, 240.0], _pair(_float(), ordered=True),
                        "CT intensity window in HU, mapped to [0, 1]"),
        "num_cases": Field(12, _int(lo=2), "Pancreas-CT: scans drawn at random from the dataset"),
        "split": Field([8, 2, 2], _split, "Pancreas-CT: [train, val, test] scans (split by scan)"),
        "train_frames": Field(3000, _int(lo=1), "BAGLS: random training subset size"),
        "val_frames": Field(500, _int(lo=1), "BAGLS: validation frames drawn from the rest of training/"),
        "test_frames": Field(None, _int(lo=1, optional=True), "BAGLS: limit test/ to this many frames (null: all)"),
        "merge_tumour": Field(True, _bool, "MSD layout: merge label 2 (tumour) into pancreas"),
        "channels": Field(1, _choice(1, 3), "input channels the network sees (BAGLS RGB frames: 1 = grayscale, 3 = RGB)"),
        "split_seed": Field(0, _int(lo=0), "seed of the subset/split draw (recorded in split.json)"),
        "split_file": Field(None, _str(optional=True),
                            "use this split.json instead of drawing one (experiment grids share one)"),
        "cache_dir": Field("data/cache", _str(), "where prepared 2D slices are stored"),
        "augment": Field(True, _bool, "MONAI augmentation on the training set (flips, rotations, scales, intensity)"),
        "foreground_fraction": Field(0.0, _float(lo=0.0, hi=1.0),
                                     "share of training draws forced to come from slices/frames with foreground "
                                     "(the rest uniform; nnU-Net: 0.33; 0 = plain shuffle, the paper's)"),
        "folds": Field(1, _int(lo=1), "Pancreas-CT cross-validation: the selected scans are split into this many "
                       "test folds (1 = the fixed data.split; with K > 1 data.split[1] is the validation count "
                       "per fold and the rest train)"),
        "fold": Field(0, _int(lo=0), "with data.folds > 1: which fold is the test set (0 … folds-1)"),
        "num_workers": Field(0, _int(lo=0), "DataLoader worker processes"),
    },
    "model": {
        "name": Field("unet", _choice("unet", "attention_unet", "unet3plus"),
                      "architecture: unet | attention_unet | unet3plus"),
        "base_channels": Field(16, _int(lo=1), "channels of the first stage (doubled per stage); paper 64"),
        "depth": Field(4, _int(lo=1, hi=6), "number of down-sampling steps"),
        "norm": Field("batch", _choice("batch", "instance"), "normalisation in the conv blocks"),
        "deep_supervision": Field(False, _bool, "UNet3+: deep supervision heads (training only)"),
        "cat_channels": Field(None, _int(lo=1, optional=True),
                              "UNet3+: channels per full-scale skip (null: base_channels)"),
    },
    "regularizer": {
        "name": Field("none", _str(), "regularizer in every slot (see `medseg regularizers`)"),
    },
    "train": {
        "epochs": Field(5, _int(lo=1), "training epochs"),
        "batch_size": Field(16, _int(lo=1), "slices per training batch"),
        "lr": Field(1e-3, _float(lo=0.0), "Adam learning rate"),
        "betas": Field([0.9, 0.999], _pair(_float(lo=0.0, hi=1.0)), "Adam betas"),
        "eps": Field(1e-8, _float(lo=0.0), "Adam epsilon"),
        "weight_decay": Field(0.0, _float(lo=0.0), "Adam weight decay"),
        "loss": Field("auto", _choice("auto", "ce", "dice_ce", "ce_dice_ssim"),
                      "auto: ce for pancreas, ce_dice_ssim for bagls (the paper's); dice_ce: "
                      "MONAI DiceCELoss, for short CPU runs on tiny targets"),
        "dice_batch": Field(True, _bool, "Dice term of dice_ce/ce_dice_ssim over the whole batch (nnU-Net's "
                            "batch Dice); false: per slice, the old behaviour, which rewards empty predictions "
                            "on the many slices without foreground"),
        "dice_include_background": Field(False, _bool, "Dice term also over the background class (false: "
                                         "foreground only, as nnU-Net)"),
        "lr_schedule": Field("constant", _choice("constant", "poly"),
                             "constant (the paper's) or poly: lr·(1 − step/total)^poly_exponent, per step"),
        "poly_exponent": Field(0.9, _float(lo=0.0), "exponent of the poly schedule (nnU-Net: 0.9)"),
        "accelerator": Field("auto", _choice("auto", "cpu", "gpu", "cuda", "mps"), "Lightning accelerator"),
        "devices": Field(1, _devices, "devices per node (int, list or auto)"),
        "strategy": Field("auto", _str(), "Lightning strategy: auto | ddp | ddp_spawn | …"),
        "num_nodes": Field(1, _int(lo=1), "nodes (multi-node DDP, e.g. under SLURM)"),
        "precision": Field("auto", _choice("auto", "32", "32-true", "16-mixed", "bf16-mixed"),
                           "auto: 16-mixed on GPU, 32 on CPU"),
        "num_threads": Field(None, _int(lo=1, optional=True), "CPU threads for torch (null: torch default)"),
        "limit_train_batches": Field(None, _limit, "cap on batches per epoch (int) or fraction (float)"),
        "check_val_every_n_epoch": Field(1, _int(lo=1), "validate every N epochs"),
        "log_every_n_steps": Field(10, _int(lo=1), "logging interval in steps"),
        "deterministic": Field(True, _bool, "deterministic algorithms (same seed → same result on CPU)"),
        "progress_bar": Field(True, _bool, "Lightning's progress bar"),
    },
    "eval": {
        "empty_score": Field(1.0, _float(lo=0.0, hi=1.0, optional=True),
                             "score of a case where prediction and label are both empty (null: leave the case out)"),
        "batch_size": Field(32, _int(lo=1), "slices per forward pass at evaluation/prediction"),
        "nsd_tolerance_mm": Field(2.0, _float(lo=0.0), "tolerance of the normalised surface Dice (NSD), mm "
                                  "(BAGLS: pixels)"),
        "empty_hd95": Field(0.0, _float(lo=0.0, optional=True),
                            "HD95 (mm) of a case where prediction and label are both empty (null: leave "
                            "the case out of the HD95 mean)"),
        "missing_hd95": Field("diagonal", _distance_or_diagonal,
                              "HD95 (mm) when exactly one of prediction and label is empty: diagonal (the "
                              "case's grid diagonal, the worst possible value), a number, or null (leave out)"),
    },
}

SECTIONS = tuple(k for k, v in SCHEMA.items() if isinstance(v, dict))


def defaults() -> dict[str, Any]:
    """The config with every key at its default (``data.dataset``/``data.root`` are None)."""
    out: dict[str, Any] = {}
    for key, spec in SCHEMA.items():
        if isinstance(spec, dict):
            out[key] = {k: copy.deepcopy(f.default) for k, f in spec.items()}
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (YAML 1.2 forbids it;
    PyYAML would silently keep the last value)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if first != line:
                raise _DuplicateKey(key, line, first)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def load_yaml_text(text: str, source: str | os.PathLike) -> Any:
    """Parse YAML ``text`` strictly (duplicate keys refused); errors are ConfigErrors naming
    ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(f"{source}: duplicate key '{dup.key}' (line {dup.line}; first on line "
                          f"{dup.first})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}: not valid YAML{line}: {problem}") from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable or malformed file (random bytes,
    duplicate keys) is a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found" if not p.exists() else f"{p}: not a file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
    data = load_yaml_text(text, p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a YAML mapping of sections, "
                          f"not a {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (['a', 'b'], value); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.epochs=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_dotted(cfg: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``cfg[p0][p1]… = value``, creating intermediate mappings."""
    node = cfg
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Returns a new dict."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(out, path, value)
    return out


def validate(raw: Mapping[str, Any], *, require_data: bool = True) -> dict[str, Any]:
    """Check every key against :data:`SCHEMA`, fill defaults, return a new config."""
    cfg = defaults()
    for key, value in raw.items():
        if key not in SCHEMA:
            raise ConfigError(f"config key '{key}' is unknown (known: {', '.join(SCHEMA)})")
        spec = SCHEMA[key]
        if isinstance(spec, Field):
            cfg[key] = spec.convert(key, value)
            continue
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping of {key}.* keys")
        if key == "regularizer":
            cfg[key] = _validate_regularizer(value)
            continue
        for sub, v in value.items():
            if sub not in spec:
                raise ConfigError(
                    f"config key '{key}.{sub}' is unknown ({key} has: {', '.join(sorted(spec))})"
                )
            cfg[key][sub] = spec[sub].convert(f"{key}.{sub}", v)
    if require_data:
        for sub in ("dataset", "root"):
            if cfg["data"][sub] is None:
                raise ConfigError(f"config key 'data.{sub}' is required")
    _check_folds(cfg["data"])
    if cfg["data"]["dataset"] == "pancreas":
        if cfg["data"]["layout"] == "bagls":
            raise ConfigError("config key 'data.layout' must be tcia, msd or auto for pancreas")
        if cfg["data"]["folds"] == 1 and sum(cfg["data"]["split"]) > cfg["data"]["num_cases"]:
            raise ConfigError(
                f"config key 'data.split' asks for {sum(cfg['data']['split'])} scans but "
                f"data.num_cases is {cfg['data']['num_cases']}"
            )
    if cfg["data"]["dataset"] == "bagls" and cfg["data"]["layout"] in ("tcia", "msd"):
        raise ConfigError("config key 'data.layout' must be bagls or auto for bagls")
    return cfg


def _check_folds(data: Mapping[str, Any]) -> None:
    """Cross-validation keys: Pancreas-CT only; every fold keeps a train and a val scan."""
    k, fold = data["folds"], data["fold"]
    if k == 1:
        if fold != 0:
            raise ConfigError(f"config key 'data.fold' is {fold} but data.folds is 1 (no cross-validation)")
        return
    if data["dataset"] == "bagls":
        raise ConfigError("config key 'data.folds': BAGLS has a fixed official test set (test/); "
                          "cross-validation (folds > 1) is for Pancreas-CT")
    if fold >= k:
        raise ConfigError(f"config key 'data.fold' must be < data.folds ({k}), got {fold}")
    n, n_val = data["num_cases"], data["split"][1]
    if k > n or n - -(-n // k) - n_val < 1:
        raise ConfigError(f"config key 'data.folds': {k} folds of data.num_cases = {n} scans with "
                          f"{n_val} validation scans (data.split[1]) leave no training scan")


def _validate_regularizer(value: Mapping[str, Any]) -> dict[str, Any]:
    from .regularizers import check_params  # local: regularizers import torch

    params = dict(value)
    name = params.pop("name", "none")
    name = SCHEMA["regularizer"]["name"].convert("regularizer.name", name)
    try:
        checked = check_params(name, params)
    except ConfigError:
        raise
    except Exception as exc:  # registry raises MedsegError subclasses; re-key them
        raise ConfigError(f"config key 'regularizer': {exc}") from None
    return {"name": name, **checked}


def load_config(path: str | os.PathLike | None, overrides: Iterable[str] = (),
                *, require_data: bool = True) -> dict[str, Any]:
    """Load a run config file, apply ``key=value`` overrides and validate it."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return validate(raw, require_data=require_data)


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a resolved config as YAML (atomically)."""
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(dict(cfg), sort_keys=False))


def resolve_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """Resolve a config path relative to ``base`` (default: the working directory)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or base is None:
        return p
    return Path(base) / p
