"""Run configuration: typed sections, their checks, and :func:`load_config` (reading the
YAML file and applying dotted ``key=value`` overrides is :mod:`medseg.config_files`).

A run config has five sections — ``data``, ``model``, ``regularizer``, ``train``,
``eval`` — plus ``seed``. Each section is one typed object (:class:`DataConfig`,
:class:`ModelConfig`, :class:`RegularizerConfig`, :class:`TrainConfig`,
:class:`EvalConfig`, together :class:`RunConfig`) that owns its keys' defaults,
one-line docs and checks (:func:`key`); a config file only needs the keys it
changes. ``regularizer`` holds ``name`` plus that regularizer's own parameters:
those are its constructor's arguments, checked by building one (one source of
truth); ``model.name`` is checked against the model registry.

Why plain dataclasses (not pydantic or OmegaConf): no extra dependency, and the
resolved config stays plain data — the dict form (:meth:`RunConfig.as_dict`) is
what runs write to ``config.yaml``, checkpoints carry (``weights_only`` loading
accepts it) and Ray ships to workers. Read it typed with :func:`typed`.

Unknown keys and bad values raise :class:`~medseg.errors.ConfigError` naming the
key, e.g. ``config key 'train.epoch' is unknown (train has: batch_size, epochs, …)``.
``medseg config show CFG [key=value …]`` prints a resolved config with every doc.

Example::

    cfg = load_config("configs/cpu/pancreas_unet.yaml",
                      ["regularizer.name=heuristic", "regularizer.k=3"])
    cfg["train"]["epochs"], typed(cfg).train.epochs
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping

import yaml

from .checks import SEED_MAX, check_bool, check_choice, check_int, check_real
from .config_files import apply_overrides, read_yaml
from .errors import ConfigError

# --------------------------------------------------------------------------- fields


Converter = Callable[[str, Any], Any]


def key(default: Any, check: Converter, doc: str) -> Any:
    """A config key of a section: its default, its check (``check(dotted_key, value)``
    returns the value converted or raises a ConfigError naming the key) and a one-line doc."""
    return field(default_factory=lambda: copy.deepcopy(default), metadata={"check": check, "doc": doc})


def _checked(key: str, check: Callable[..., Any], value: Any, *args: Any, **kwargs: Any) -> Any:
    """``check`` (a :mod:`medseg.checks` function) with its ValueError raised as a
    ConfigError naming the key: ``config key 'train.epochs' must be an integer >= 1, got 0``."""
    try:
        return check(f"config key '{key}'", value, *args, **kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _number(v: Any) -> Any:
    """A number written as text (``"3"``, ``"1e-4"``: YAML 1.1 reads ``1e-4`` as a string) as a
    float; anything else unchanged (the check refuses what is not a number)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _int(lo: int | None = None, hi: int | None = None, optional: bool = False):
    """An integer in [lo, hi]; ``3.0`` and ``"3"`` are 3."""
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        n = _number(v)
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        return _checked(key, check_int, n, lo, hi)

    return convert


def _float(lo: float | None = None, hi: float | None = None, optional: bool = False):
    """A finite number in [lo, hi] (None: unbounded, but never infinite); ``"1e-4"`` is 1e-4.

    No hyper-parameter, window or distance of a run is infinite (nor NaN): ``train.lr=.inf``
    is refused here, naming the key, not found as NaN losses after the first step."""
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        return _checked(key, check_real, _number(v), -math.inf if lo is None else lo,
                        math.inf if hi is None else hi, low_open=lo is None, high_open=hi is None)

    return convert


def _bool(key: str, v: Any) -> bool:
    """true/false; also the words true, false, yes, no, 1, 0 (any case) as text."""
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
        v = v.lower() in ("true", "yes", "1")
    return _checked(key, check_bool, v)


def _str(optional: bool = False):
    def convert(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {v!r}")
        return str(v)

    return convert


def _choice(*choices: Any):
    """One of ``choices``; a number matches its text (``precision=32`` is ``"32"``)."""
    def convert(key: str, v: Any) -> Any:
        if not isinstance(v, (str, bool)) and str(v) in choices:
            v = str(v)
        return _checked(key, check_choice, v, choices)

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


def _mirror_axes(key: str, v: Any) -> list[str]:
    """A list of distinct in-plane axes, ``x`` (slice width) and ``y`` (slice height)."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or any(a not in ("x", "y") for a in v) or len(set(v)) != len(v):
        raise ConfigError(f"config key '{key}' must be a list of distinct axes from x, y "
                          f"(e.g. [x] or [x, y] or []), got {v!r}")
    return sorted(v)


def _split(key: str, v: Any) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ConfigError(f"config key '{key}' must be [train, val, test] counts, got {v!r}")
    out = [_int(lo=0)(key, x) for x in v]
    if min(out) < 1:
        raise ConfigError(f"config key '{key}' needs at least one train, one validation (model "
                          f"selection) and one test scan, got {v!r}")
    return out


def _model_name(key: str, v: Any) -> str:
    """A model registry key (the registry is the one list of names)."""
    from .models.registry import available  # local: models import torch

    return _choice(*available())(key, v)


def _devices(key: str, v: Any) -> Any:
    """``auto``, a device count >= 1, or a non-empty list of distinct device indices (>= 0)."""
    if v == "auto":
        return v
    if isinstance(v, (list, tuple)):
        out = [_int(lo=0)(key, d) for d in v]
        if not out or len(set(out)) != len(out):
            raise ConfigError(f"config key '{key}' must be auto, a count >= 1 or a non-empty list of "
                              f"distinct device indices, got {v!r}")
        return out
    return _int(lo=1)(key, v)


def _strategy(key: str, v: Any) -> str:
    """A strategy name Lightning knows (``auto``, ``ddp``, ``ddp_spawn``, ``fsdp``, …)."""
    v = _str()(key, v)
    if v == "auto":
        return v
    from pytorch_lightning.strategies import StrategyRegistry  # local: Lightning is slow to import

    if v not in StrategyRegistry.available_strategies():
        raise ConfigError(f"config key '{key}' must be auto or a Lightning strategy (ddp, ddp_spawn, fsdp, "
                          f"deepspeed, single_device, …), got {v!r}")
    return v


def _limit(key: str, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) or (isinstance(v, str) and "." in v):
        return _float(lo=0.0, hi=1.0)(key, v)
    return _int(lo=1)(key, v)


class Section:
    """A config section: a dataclass whose fields are made with :func:`key`.

    Read it typed (``cfg.train.epochs``) or as a mapping (``cfg["train"]["epochs"]``):
    the resolved config the rest of medseg passes around, writes to YAML and stores in
    checkpoints is the plain-dict form, :meth:`as_dict`.
    """

    name_: ClassVar[str]

    @classmethod
    def keys_doc(cls) -> dict[str, str]:
        """Each key's one-line doc."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> "Section":
        """Check every key of ``raw`` (unknown keys and bad values name the key); defaults fill the rest."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"config key '{cls.name_}' must be a mapping of {cls.name_}.* keys")
        checks = {f.name: f.metadata["check"] for f in fields(cls)}
        values = {}
        for sub, v in raw.items():
            if sub not in checks:
                raise ConfigError(f"config key '{cls.name_}.{sub}' is unknown "
                                  f"({cls.name_} has: {', '.join(sorted(checks))})")
            values[sub] = checks[sub](f"{cls.name_}.{sub}", v)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class DataConfig(Section):
    """Where the data is and how it becomes 2D training slices (Pancreas-CT scans or BAGLS frames)."""

    name_: ClassVar[str] = "data"
    dataset: str | None = key(None, _choice("pancreas", "bagls", "nnunet"),
                              "which dataset: pancreas | bagls | nnunet (any nnU-Net v2 raw or "
                              "Decathlon dataset folder: labels and channels from its dataset.json)")
    root: str | None = key(None, _str(), "dataset root folder (see data/README.md)")
    layout: str = key("auto", _choice("auto", "tcia", "msd", "bagls", "nnunet"),
                      "on-disk layout: tcia | msd (Pancreas-CT), bagls, nnunet; auto detects")
    size: list[int] = key([128, 128], _pair(_int(lo=8), allow_scalar=True),
                          "slice/frame size [H, W] after resizing (an int means square)")
    window: list[float] = key([-100.0, 240.0], _pair(_float(), ordered=True),
                              "CT intensity window in HU, mapped to [0, 1]")
    num_cases: int = key(12, _int(lo=2), "Pancreas-CT, nnunet: scans drawn at random from the dataset")
    split: list[int] = key([8, 2, 2], _split, "Pancreas-CT, nnunet: [train, val, test] scans (split by scan)")
    train_frames: int = key(3000, _int(lo=1), "BAGLS: random training subset size")
    val_frames: int = key(500, _int(lo=1), "BAGLS: validation frames drawn from the rest of training/")
    test_frames: int | None = key(None, _int(lo=1, optional=True), "BAGLS: limit test/ to this many frames (null: all)")
    normalisation: str = key("auto", _choice("auto", "plan"),
                             "auto: the dataset's own (Pancreas-CT: the HU window to [0, 1]; BAGLS: "
                             "[0, 1]; nnunet: its plan); plan: the fingerprint's plan as nnU-Net "
                             "normalises (CT: clip to the foreground 0.5–99.5 percentiles, z-score)")
    merge_tumour: bool = key(True, _bool, "MSD layout: merge label 2 (tumour) into pancreas (false: "
                             "pancreas and tumour are two classes)")
    channels: int = key(1, _choice(1, 3), "input channels the network sees (BAGLS RGB frames: 1 = grayscale, 3 = RGB)")
    split_seed: int = key(0, _int(lo=0, hi=SEED_MAX), "seed of the subset/split draw (recorded in split.json)")
    split_file: str | None = key(None, _str(optional=True),
                                 "use this split.json instead of drawing one (experiment grids share one)")
    cache_dir: str = key("data/cache", _str(), "where prepared 2D slices are stored")
    augment: bool = key(True, _bool, "MONAI augmentation on the training set (flips, rotations, scales, intensity)")
    mirror_axes: list[str] = key(["x"], _mirror_axes,
                                 "in-plane axes the augmentation mirrors (each with probability 0.5): [x], "
                                 "[y], [x, y] or []; recorded in the checkpoint: predict --tta mirrors "
                                 "exactly these")
    foreground_fraction: float = key(0.0, _float(lo=0.0, hi=1.0),
                                     "share of training draws forced to come from slices/frames with foreground "
                                     "(the rest uniform; nnU-Net: 0.33; 0 = plain shuffle, the paper's)")
    folds: int = key(1, _int(lo=1), "Pancreas-CT cross-validation: the selected scans are split into this many "
                     "test folds (1 = the fixed data.split; with K > 1 data.split[1] is the validation count "
                     "per fold and the rest train)")
    fold: int = key(0, _int(lo=0), "with data.folds > 1: which fold is the test set (0 … folds-1)")
    train_size: int | None = key(None, _int(lo=1, optional=True),
                                 "train on this many of the split's training scans (BAGLS: frames), a "
                                 "subset seeded by data.split_seed and nested (the 2 are among the 4); "
                                 "validation and test unchanged (null: all; experiments: grid.train_sizes)")
    num_workers: int = key(0, _int(lo=0), "DataLoader worker processes")


@dataclass
class ModelConfig(Section):
    """The network: architecture, width, depth, normalisation."""

    name_: ClassVar[str] = "model"
    name: str = key("unet", _model_name, "architecture: a key of the model registry (medseg.models)")
    base_channels: int = key(16, _int(lo=1), "channels of the first stage (doubled per stage); paper 64")
    depth: int = key(4, _int(lo=1, hi=6), "number of down-sampling steps")
    norm: str = key("batch", _choice("batch", "instance"), "normalisation in the conv blocks")
    deep_supervision: bool = key(False, _bool, "UNet3+: deep supervision heads (training only)")
    cat_channels: int | None = key(None, _int(lo=1, optional=True),
                                   "UNet3+: channels per full-scale skip (null: base_channels)")
    foreground_prior: float | None = key(None, _float(lo=1e-6, hi=0.5, optional=True),
                                         "start every head at this foreground probability (prior "
                                         "initialisation, Lin et al. 2017; null: PyTorch's default init; "
                                         "measured: helps Pancreas-CT's dice_ce, keeps BAGLS' ce_dice_ssim "
                                         "at predicting nothing)")


@dataclass
class RegularizerConfig(Section):
    """The regularizer in every slot, by registry key, and its parameters.

    The parameters are not listed here: they are the regularizer's constructor
    arguments, checked by building one (:func:`medseg.regularizers.check_params`).
    """

    name_: ClassVar[str] = "regularizer"
    name: str = key("none", _str(), "regularizer in every slot (see `medseg regularizers`)")
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def keys_doc(cls) -> dict[str, str]:
        return {"name": cls.__dataclass_fields__["name"].metadata["doc"]}

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> "RegularizerConfig":
        from .regularizers import check_params  # local: regularizers import torch

        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError("config key 'regularizer' must be a mapping of regularizer.* keys")
        params = dict(raw)
        name = _str()("regularizer.name", params.pop("name", "none"))
        try:
            return cls(name, check_params(name, params))
        except ConfigError:
            raise
        except Exception as exc:  # registry raises MedsegError subclasses; re-key them
            raise ConfigError(f"config key 'regularizer': {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **copy.deepcopy(self.params)}


@dataclass
class TrainConfig(Section):
    """Optimiser, loss, schedule and the Lightning Trainer."""

    name_: ClassVar[str] = "train"
    epochs: int = key(5, _int(lo=1), "training epochs")
    batch_size: int = key(16, _int(lo=1), "slices per training batch")
    lr: float = key(1e-3, _float(lo=0.0), "Adam learning rate")
    betas: list[float] = key([0.9, 0.999], _pair(_float(lo=0.0, hi=1.0)), "Adam betas")
    eps: float = key(1e-8, _float(lo=0.0), "Adam epsilon")
    weight_decay: float = key(0.0, _float(lo=0.0), "Adam weight decay")
    loss: str = key("auto", _choice("auto", "ce", "dice_ce", "ce_dice_ssim"),
                    "auto: ce for pancreas, ce_dice_ssim for bagls (the paper's), dice_ce for nnunet; dice_ce: "
                    "MONAI DiceCELoss, for short CPU runs on tiny targets")
    dice_batch: bool = key(True, _bool, "Dice term of dice_ce/ce_dice_ssim over the whole batch (nnU-Net's "
                           "batch Dice); false: per slice, the old behaviour, which rewards empty predictions "
                           "on the many slices without foreground")
    dice_include_background: bool = key(False, _bool, "Dice term also over the background class (false: "
                                        "foreground only, as nnU-Net)")
    lr_schedule: str = key("constant", _choice("constant", "poly"),
                           "constant (the paper's) or poly: lr·(1 − step/total)^poly_exponent, per step")
    poly_exponent: float = key(0.9, _float(lo=0.0), "exponent of the poly schedule (nnU-Net: 0.9)")
    accelerator: str = key("auto", _choice("auto", "cpu", "gpu", "cuda", "mps"), "Lightning accelerator")
    devices: int | str | list = key(1, _devices, "devices per node (int, list or auto)")
    strategy: str = key("auto", _strategy, "Lightning strategy: auto | ddp | ddp_spawn | …")
    num_nodes: int = key(1, _int(lo=1), "nodes (multi-node DDP, e.g. under SLURM)")
    precision: str = key("auto", _choice("auto", "32", "32-true", "16-mixed", "bf16-mixed"),
                         "auto: 16-mixed on GPU, 32 on CPU")
    num_threads: int | None = key(None, _int(lo=1, optional=True), "CPU threads for torch (null: torch default)")
    limit_train_batches: int | float | None = key(None, _limit, "cap on batches per epoch (int) or fraction (float)")
    samples_per_epoch: int | None = key(None, _int(lo=1, hi=10_000_000, optional=True),
                                        "training draws per epoch, at most 10,000,000 (null: one pass over the "
                                        "training slices); "
                                        "fixed, it gives every training-set size the same number of steps "
                                        "(learning curves)")
    check_val_every_n_epoch: int = key(1, _int(lo=1), "validate every N epochs")
    log_every_n_steps: int = key(10, _int(lo=1), "logging interval in steps")
    deterministic: bool = key(True, _bool, "deterministic algorithms (same seed → same result on CPU)")
    progress_bar: bool = key(True, _bool, "Lightning's progress bar")


@dataclass
class EvalConfig(Section):
    """Per-case scoring on the native grid: empty-case conventions, boundary metrics."""

    name_: ClassVar[str] = "eval"
    empty_score: float | None = key(1.0, _float(lo=0.0, hi=1.0, optional=True),
                                    "score of a case where prediction and label are both empty (null: leave the case out)")
    batch_size: int = key(32, _int(lo=1), "slices per forward pass at evaluation/prediction")
    nsd_tolerance_mm: float = key(2.0, _float(lo=0.0), "tolerance of the normalised surface Dice (NSD), mm "
                                  "(BAGLS: pixels)")
    empty_hd95: float | None = key(0.0, _float(lo=0.0, optional=True),
                                   "HD95 (mm) of a case where prediction and label are both empty (null: leave "
                                   "the case out of the HD95 mean)")
    missing_hd95: float | str | None = key("diagonal", _distance_or_diagonal,
                                           "HD95 (mm) when exactly one of prediction and label is empty: diagonal (the "
                                           "case's grid diagonal, the worst possible value), a number, or null (leave out)")


@dataclass
class RunConfig:
    """A whole run config: ``seed`` and one typed object per section.

    ``RunConfig.from_mapping(raw).as_dict()`` is what :func:`validate` returns.
    """

    seed: int = key(0, _int(lo=0, hi=SEED_MAX), "seed of the run: weights, augmentation, dropout masks")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "RunConfig":
        known = [f.name for f in fields(cls)]
        for name in raw:
            if name not in known:
                raise ConfigError(f"config key '{name}' is unknown (known: {', '.join(known)})")
        out = cls(**{name: SECTION_TYPES[name].from_mapping(raw[name]) for name in SECTIONS if name in raw})
        if "seed" in raw:
            out.seed = _int(lo=0, hi=SEED_MAX)("seed", raw["seed"])
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **{name: getattr(self, name).as_dict() for name in SECTIONS}}


#: section name → its typed object
SECTION_TYPES: dict[str, type[Section]] = {
    c.name_: c for c in (DataConfig, ModelConfig, RegularizerConfig, TrainConfig, EvalConfig)}
SECTIONS = tuple(SECTION_TYPES)


def defaults() -> dict[str, Any]:
    """The config with every key at its default (``data.dataset``/``data.root`` are None)."""
    return RunConfig().as_dict()


def typed(cfg: Mapping[str, Any]) -> RunConfig:
    """The typed view of a resolved (or raw) config: ``typed(cfg).train.epochs``."""
    return RunConfig.from_mapping(cfg)


# --------------------------------------------------------------------------- loading
# reading YAML files and applying overrides: medseg.config_files


def validate(raw: Mapping[str, Any], *, require_data: bool = True) -> dict[str, Any]:
    """Check every key (:class:`RunConfig`), fill defaults, return the resolved config as a dict."""
    cfg = RunConfig.from_mapping(raw)
    _check_data(cfg.data, require_data)
    _check_size_for_depth(cfg.data, cfg.model)
    return cfg.as_dict()


def _check_size_for_depth(data: DataConfig, model: ModelConfig) -> None:
    """The slice size must survive the network's down-sampling: H and W divisible by
    2**model.depth (every model of the registry pools by 2 per stage and refuses other sizes)."""
    factor = 2 ** model.depth
    if any(v % factor for v in data.size):
        raise ConfigError(f"config key 'data.size' {list(data.size)} must be divisible by 2**model.depth "
                          f"= {factor} (model.depth {model.depth}): lower model.depth or choose a size "
                          f"that is a multiple of {factor}")


def _check_data(data: DataConfig, require_data: bool) -> None:
    """Checks across ``data`` keys (each key alone is checked by its section)."""
    if require_data:
        for sub in ("dataset", "root"):
            if getattr(data, sub) is None:
                raise ConfigError(f"config key 'data.{sub}' is required")
    _check_folds(data.as_dict())
    _check_train_size(data.as_dict())
    if data.dataset in ("pancreas", "nnunet"):
        if data.dataset == "pancreas" and data.layout in ("bagls", "nnunet"):
            raise ConfigError("config key 'data.layout' must be tcia, msd or auto for pancreas")
        if data.dataset == "nnunet" and data.layout not in ("auto", "nnunet"):
            raise ConfigError("config key 'data.layout' must be nnunet or auto for nnunet")
        if data.folds == 1 and sum(data.split) > data.num_cases:
            raise ConfigError(f"config key 'data.split' asks for {sum(data.split)} scans but "
                              f"data.num_cases is {data.num_cases}")
    if data.dataset == "bagls" and data.layout in ("tcia", "msd", "nnunet"):
        raise ConfigError("config key 'data.layout' must be bagls or auto for bagls")


def training_count(data: Mapping[str, Any]) -> int:
    """How many training scans (BAGLS: frames) the split gives a run (the smallest fold's with folds)."""
    if data["dataset"] == "bagls":
        return data["train_frames"]
    k, n, n_val = data["folds"], data["num_cases"], data["split"][1]
    return data["split"][0] if k == 1 else n - -(-n // k) - n_val


def _check_train_size(data: Mapping[str, Any]) -> None:
    """Against the split the config draws (a given ``data.split_file`` is checked when it is read)."""
    size = data["train_size"]
    if size is not None and not data["split_file"] and size > training_count(data):
        raise ConfigError(f"config key 'data.train_size' is {size} but the split has "
                          f"{training_count(data)} training {'frames' if data['dataset'] == 'bagls' else 'scans'}")


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
