"""The :class:`Predictor`: networks loaded once, then any number of volumes or frames.

One forward *pass* is one member network on one (possibly mirrored) input, in
evaluation mode — or, with Monte Carlo sampling, with its regularizer slots in
training mode. A prediction runs

    Σ over members of (2^|its mirror axes| mirrorings with ``tta`` else 1) × (``mc_samples`` or 1)

passes over each chunk of slices. Each pass gives class probabilities
``softmax(logits)``, resampled bilinearly to the native slice grid exactly as
:func:`medseg.data.preprocess.predict_slices` does (the mirrored ones mirrored
back first); the result is their mean ``p̄`` — so an ensemble's probability map is
the mean of its members' maps on the input grid — with

* the mask: arg-max of ``p̄`` (one pass: identical to ``medseg evaluate``'s mask); the
  class index is the label value (labels are 0 … L, consecutive);
* the foreground probability ``p̄₁`` (several labels: the probability of any
  foreground, ``1 − p̄₀``) and, when asked, every class's ``p̄_c``;
* the predictive entropy ``−Σ_c p̄_c ln p̄_c`` in nats, over all classes;
* with more than one pass, the (population) variance over the passes of the
  probability of the predicted class (the arg-max of ``p̄``) — for a binary network
  exactly the variance of the foreground probability, as ``p₀ = 1 − p₁``.

Everything is averaged in memory, chunk by chunk (``batch_size`` slices). Test-time
mirroring flips exactly the in-plane axes each member's training mirrored (its
checkpoint's ``mirror_axes``, from ``data.mirror_axes``: every subset of them, as
nnU-Net mirrors along its training mirror axes) — mirroring along an axis training
never saw shows the network anatomy it cannot segment; ``tta`` with a member that
was trained without mirroring is refused. A volume given with its geometry is first
brought to the orientation the network was trained in (:mod:`medseg.data.orientation`)
and the prediction brought back to the input's array order. A checkpoint of an
``nnunet`` dataset carries its plan: :meth:`Predictor.predict_volume` normalises the
(C, Z, Y, X) channels with it and slices across its ``slice_axis``, exactly as the
slice cache does for training; Monte Carlo sampling puts only the :class:`~medseg.regularizers.Regularizer`
modules in training mode (BatchNorm keeps its running statistics) and draws from
the global torch RNG seeded with ``seed`` for every call, so a case's samples do
not depend on what was predicted before it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, MedsegError
from .members import Member, check_members, check_mirroring, check_stochastic, load_member

#: tensor dim of each in-plane axis of an (N, C, H, W) batch (x: width, y: height)
MIRROR_DIMS = {"x": -1, "y": -2}


def mirrorings(axes: Sequence[str]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` as tensor dims to flip: the identity first, then x, y, both."""
    dims = [MIRROR_DIMS[a] for a in sorted(axes)]
    out: list[tuple[int, ...]] = [()]
    for d in dims:
        out += [m + (d,) for m in out]
    return sorted(out, key=lambda m: (len(m), [-v for v in m]))


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise MedsegError(f"--device {device}: expected cpu, cuda or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise MedsegError(f"--device {device}: expected cpu, cuda or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedsegError(f"--device {device}: no CUDA GPU is available (use --device cpu or auto)")
    return dev


@dataclass
class Prediction:
    """What a :class:`Predictor` returns for N slices, all on the native (N, Y, X) grid."""

    mask: np.ndarray                 #: uint8 arg-max of the mean class probabilities = label value
    probability: np.ndarray          #: float32 mean foreground probability (several labels: 1 − p̄₀)
    entropy: np.ndarray              #: float32 predictive entropy of the mean, nats
    variance: np.ndarray | None      #: float32 variance over passes of the predicted class's probability
    passes: int                      #: forward passes averaged
    #: float32 (K, ...) mean probability of every class in label-value order (when asked)
    probabilities: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: Sequence["Prediction"]) -> "Prediction":
        def cat(name: str, axis: int = 0) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays, axis=axis)

        return cls(cat("mask"), cat("probability"), cat("entropy"), cat("variance"), parts[0].passes,
                   cat("probabilities", axis=1))

    def map(self, fn) -> "Prediction":
        """Every array through ``fn`` (e.g. back to the input's orientation); ``fn`` keeps
        leading axes (the class axis of ``probabilities``)."""
        v = None if self.variance is None else fn(self.variance)
        c = None if self.probabilities is None else fn(self.probabilities)
        return Prediction(fn(self.mask), fn(self.probability), fn(self.entropy), v, self.passes, c)

    def squeeze(self) -> "Prediction":
        """The one slice of a frame prediction as (Y, X) arrays."""
        v = None if self.variance is None else self.variance[0]
        c = None if self.probabilities is None else self.probabilities[:, 0]
        return Prediction(self.mask[0], self.probability[0], self.entropy[0], v, self.passes, c)


class Predictor:
    """Load checkpoints once; predict volumes and frames with their preprocessing.

    Args:
        checkpoints: one checkpoint, or several (an ensemble; they must share the
            dataset and preprocessing).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tta: average over the mirrorings along the axes each member's training
            mirrored (refused for a member trained without mirroring).
        mc_samples: Monte Carlo samples per member (0: none; the regularizer must be
            stochastic).
        seed: seed of the Monte Carlo draws.
        batch_size: slices per forward pass (default: the first checkpoint's
            ``eval.batch_size``).
    """

    def __init__(self, checkpoints: str | os.PathLike | Sequence[str | os.PathLike], *,
                 device: str | torch.device = "auto", tta: bool = False, mc_samples: int = 0,
                 seed: int = 0, batch_size: int | None = None):
        paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
        if not paths:
            raise MedsegError("no checkpoint given")
        if mc_samples < 0:
            raise MedsegError(f"--mc-samples {mc_samples}: must be >= 0")
        if batch_size is not None and batch_size < 1:
            raise MedsegError(f"--batch-size {batch_size}: must be >= 1")
        self.device = resolve_device(device)
        self.members: list[Member] = [load_member(Path(p), self.device) for p in paths]
        check_members(self.members)
        if mc_samples:
            check_stochastic(self.members)
        self.tta, self.mc_samples, self.seed = bool(tta), int(mc_samples), int(seed)
        if self.tta:
            check_mirroring(self.members)
        self.batch_size = int(batch_size or self.members[0].eval_batch_size)

    # ------------------------------------------------------------------ facts
    @property
    def preprocessing(self) -> dict:
        return self.members[0].meta["preprocessing"]

    @property
    def dataset(self) -> str:
        return self.preprocessing["dataset"]

    @property
    def modality(self) -> str:
        return self.members[0].modality

    @property
    def checkpoints(self) -> list[Path]:
        return [m.checkpoint for m in self.members]

    @property
    def orientation(self) -> str:
        """The orientation volumes were sliced in during training (checkpoints before it
        was recorded: medseg's, LPS)."""
        from ..data.orientation import TRAINING_ORIENTATION

        return str(self.preprocessing.get("orientation", TRAINING_ORIENTATION))

    @property
    def labels(self) -> dict[str, int]:
        """Label name → value of the network's classes, by value (background 0 first): the
        checkpoint's ``labels`` (several labels, nnunet datasets), else the built-in binary ones."""
        pre = self.preprocessing
        if isinstance(pre.get("labels"), dict):
            return {str(k): int(v) for k, v in sorted(pre["labels"].items(), key=lambda kv: int(kv[1]))}
        from ..data.nnunet import builtin_description

        return dict(builtin_description(self.dataset).labels)

    @property
    def per_class(self) -> bool:
        """Whether outputs go per class (label maps with the labels' values, one probability
        map per class, one SEG segment per label): checkpoints that record their labels —
        every nnunet dataset and a built-in one trained with several labels. Binary
        Pancreas-CT and BAGLS checkpoints keep their single foreground outputs."""
        return isinstance(self.preprocessing.get("labels"), dict)

    @property
    def plan(self) -> dict | None:
        """The nnunet dataset's plan (normalisation, slice axis, channels, labels), else None."""
        plan = self.preprocessing.get("plan")
        return plan if isinstance(plan, dict) else None

    @property
    def channels(self) -> list[str]:
        """The input channels' names in order (an nnunet plan's ``channel_names``; CT for
        Pancreas-CT; BAGLS: gray or R, G, B)."""
        if self.plan is not None:
            return [str(c) for c in self.plan["channels"]]
        if self.dataset == "pancreas":
            return ["CT"]
        return ["R", "G", "B"] if int(self.preprocessing["channels"]) == 3 else ["gray"]

    @property
    def dataset_name(self) -> str:
        """What the training dataset is called: an nnunet dataset's folder name
        (``Dataset901_SynthAbdomen``), else Pancreas-CT / BAGLS."""
        if self.dataset == "nnunet":
            root = ((self.members[0].meta.get("config") or {}).get("data") or {}).get("root")
            return Path(str(root)).name if root else "nnunet"
        return {"pancreas": "Pancreas-CT", "bagls": "BAGLS"}.get(self.dataset, self.dataset)

    @property
    def file_ending(self) -> str | None:
        """The ending of an nnunet checkpoint's training files (``.nii.gz``, ``.png``) where its
        metadata records it (``preprocessing.file_ending`` or the plan's), else None: then
        each input's own ending decides how it is read."""
        pre, plan = self.preprocessing, self.plan or {}
        ending = pre.get("file_ending") or plan.get("file_ending")
        return str(ending) if ending else None

    def description(self, file_ending: str = ".nii.gz"):
        """The :class:`~medseg.data.nnunet.DatasetDescription` of an nnunet checkpoint (its
        plan's channels and labels) for files ending in ``file_ending``: what
        :func:`medseg.data.nnunet.read_channels` reads a new case with."""
        from ..data.nnunet import DatasetDescription

        plan = self.plan
        if plan is None:
            raise MedsegError(f"{self.checkpoints[0]}: not a checkpoint of an nnunet dataset")
        return DatasetDescription(self.dataset_name, tuple(self.channels), self.labels, file_ending)

    def mirrorings(self, member: Member) -> list[tuple[int, ...]]:
        """The tensor dims of every mirrored pass of ``member`` (the identity alone without TTA)."""
        return mirrorings(member.mirror_axes) if self.tta else [()]

    @property
    def passes(self) -> int:
        """Forward passes averaged per slice."""
        return sum(len(self.mirrorings(m)) for m in self.members) * max(1, self.mc_samples)

    # ------------------------------------------------------------------ prediction
    def predict_ct(self, hu: np.ndarray, geometry=None, what: str = "image", *,
                   classes: bool = False) -> Prediction:
        """(Z, Y, X) HU volume → prediction on the same grid.

        With its ``geometry`` (:class:`~medseg.data.Geometry`) the volume is first
        brought to the training orientation and the prediction back to ``hu``'s own
        array order; without it ``hu`` must already be in the training orientation
        (as :func:`medseg.data.load_pancreas_case` returns it). An oblique volume is a
        :class:`~medseg.errors.DataError` naming ``what``. A checkpoint with a plan (a
        one-channel nnunet dataset, Pancreas-CT with ``data.normalisation: plan``) takes it
        as its channel (:meth:`predict_volume`); ``classes`` keeps every class's probability.
        """
        from ..data.orientation import reorientation
        from ..data.preprocess import as_cached, preprocess_ct

        if self.plan is not None:
            return self.predict_volume(np.asarray(hu)[None], geometry, what, classes=classes)
        turn = None if geometry is None else reorientation(geometry, self.orientation, what)
        if turn is not None:
            hu = turn.apply(hu)
        pre = self.preprocessing
        x = as_cached(preprocess_ct(hu, pre["window"], pre["size"]))
        pred = self.predict_slices(x, hu.shape[-2:], classes=classes)
        return pred if turn is None else pred.map(turn.undo)

    def predict_volume(self, image: np.ndarray, geometry=None, what: str = "image", *,
                       classes: bool = False) -> Prediction:
        """(C, Z, Y, X) raw channels of a case → prediction on the (Z, Y, X) grid (nnunet
        checkpoints).

        The channels (``channel_names`` order, as :func:`medseg.data.nnunet.read_channels`
        stacks them) are brought to the training orientation when ``geometry`` is given
        (3D files; 2D frames have none), normalised with the checkpoint's plan, sliced
        across its ``slice_axis`` and resized as the slice cache does; the prediction
        comes back on the input's own grid and array order. ``classes`` keeps every
        class's probability (``Prediction.probabilities``, (K, Z, Y, X)).
        """
        from ..data.orientation import reorientation
        from ..data.plan import AXES, from_slices, normalise, slices_for_network
        from ..data.preprocess import as_cached

        plan = self.plan
        if plan is None:
            raise MedsegError(f"{self.checkpoints[0]}: not a checkpoint of an nnunet dataset; "
                              "use predict_ct or predict_frame")
        image = np.asarray(image)
        if image.ndim != 4 or image.shape[0] != len(self.channels) or 0 in image.shape:
            raise DataError(f"{what}: expected (C={len(self.channels)}, Z, Y, X) channels "
                            f"({', '.join(self.channels)}), got an array of shape {image.shape}")
        turn = None if geometry is None else reorientation(geometry, self.orientation, what)
        if turn is not None:
            image = turn.apply(image)
        axis = str(plan["slice_axis"])
        i = AXES.index(axis)
        native_hw = [image.shape[1 + k] for k in range(3) if k != i]
        x = as_cached(slices_for_network(normalise(image, plan), plan))
        pred = self.predict_slices(x, native_hw, classes=classes).map(lambda a: from_slices(a, axis))
        return pred if turn is None else pred.map(turn.undo)

    def predict_frame(self, image: np.ndarray, *, classes: bool = False) -> Prediction:
        """(H, W[, C]) frame → prediction of the frame's size, (H, W) arrays (BAGLS
        checkpoints; an nnunet checkpoint of 2D frames takes the frame's channels,
        (C, 1, H, W), through :meth:`predict_volume`)."""
        from ..data.preprocess import as_cached, frame_to_channels, preprocess_frame

        pre = self.preprocessing
        if self.plan is not None:  # data.normalisation: plan — as the slice cache normalises
            channels = frame_to_channels(image, int(pre["channels"]))[:, None]
            return self.predict_volume(channels, None, classes=classes).map(lambda a: a[..., 0, :, :])
        x = as_cached(preprocess_frame(image, int(pre["channels"]), pre["size"])[None])
        return self.predict_slices(x, image.shape[:2], classes=classes).squeeze()

    @torch.no_grad()
    def predict_slices(self, slices: torch.Tensor, native_hw: Sequence[int], *,
                       classes: bool = False) -> Prediction:
        """Preprocessed (N, C, H, W) slices → prediction on the (N, Y, X) native grid
        (``classes``: with every class's probability, (K, N, Y, X))."""
        native_hw = (int(native_hw[0]), int(native_hw[1]))
        with self._sampling():
            parts = [self._predict_chunk(chunk.to(self.device, non_blocking=True), native_hw, classes)
                     for chunk in slices.split(self.batch_size)]
        return Prediction.concat(parts)

    def _passes(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Class probabilities (N, K, H, W) of every pass, mirrored back."""
        for member in self.members:
            for dims in self.mirrorings(member):
                xi = x.flip(dims) if dims else x
                for _ in range(max(1, self.mc_samples)):
                    logits = member.model(xi)
                    if isinstance(logits, (list, tuple)):  # deep supervision: full resolution
                        logits = logits[0]
                    probs = torch.softmax(logits.float(), dim=1)
                    yield probs.flip(dims) if dims else probs

    def _predict_chunk(self, x: torch.Tensor, native_hw: tuple[int, int],
                       classes: bool = False) -> Prediction:
        total = square = None
        n = 0
        for probs in self._passes(x):
            if tuple(probs.shape[-2:]) != native_hw:  # as predict_slices resamples
                probs = F.interpolate(probs, size=native_hw, mode="bilinear", align_corners=False)
            binary = probs.shape[1] == 2
            total = probs if total is None else total.add_(probs)
            if self.passes > 1:
                # binary: the foreground's (= the predicted class's) squares; else every class's
                sq = probs[:, 1].square() if binary else probs.square()
                square = sq if square is None else square.add_(sq)
            n += 1
        mean = total if n == 1 else total.div_(n)
        binary = mean.shape[1] == 2
        # max(dim).indices: arg-max with the first maximum on ties, as the evaluation mask
        mask = mean.max(dim=1).indices
        if binary:
            fg = mean[:, 1]
            variance = None if square is None else square.div_(n).sub_(fg.square()).clamp_(min=0.0)
        else:  # several labels: any foreground; the variance of the predicted class's probability
            fg = 1.0 - mean[:, 0]
            variance = None
            if square is not None:
                pick = mask[:, None]
                variance = (square.gather(1, pick).div_(n).sub_(mean.gather(1, pick).square())
                            .clamp_(min=0.0)[:, 0])
        entropy = torch.special.entr(mean).sum(dim=1)
        return Prediction(_np(mask.to(torch.uint8)), _np(fg), _np(entropy),
                          None if variance is None else _np(variance), n,
                          _np(mean.transpose(0, 1)) if classes else None)

    @contextlib.contextmanager
    def _sampling(self) -> Iterator[None]:
        """Monte Carlo mode for the duration: regularizers in training mode, RNG seeded."""
        if not self.mc_samples:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            for m in self.members:
                m.regularizers_train(True)
            try:
                yield
            finally:
                for m in self.members:
                    m.regularizers_train(False)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()
