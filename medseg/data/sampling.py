"""Foreground-aware sampling of training slices (``data.foreground_fraction``).

nnU-Net draws a third of every batch from patches that contain foreground
(``oversample_foreground_percent = 0.33``, Isensee et al., Nature Methods 2021);
the rest is random. :class:`ForegroundSampler` does the same for 2D slices:
every one of the epoch's ``len(dataset)`` draws is, with probability ``f``,
replaced by a slice drawn uniformly (with replacement) from the slices that
contain foreground; the others follow a uniform shuffle of all slices. So

* the epoch length is unchanged, and ``f = 0`` is a plain shuffle;
* the expected share of foreground slices in a batch is ``f + (1 − f)·p``, with
  ``p`` the share of foreground slices in the training set;
* with several foreground labels (:func:`foreground_groups`), a forced draw first
  picks one of the labels uniformly, then a slice holding that label, as nnU-Net
  picks a class before a foreground voxel: every label, however rare, gets at least
  ``f / L`` of the draws (a slice with only the large organ no longer crowds out the
  small tumour); one label is exactly the single-group draw above;
* the draw depends only on ``(seed, epoch)``: reproducible, and identical on
  every DDP rank, where Lightning wraps the sampler in its
  ``DistributedSamplerWrapper`` and hands each rank its own slice of the same
  list (so each rank gets the share ``f`` in expectation) and forwards
  ``set_epoch``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


def foreground_slices(labels: np.ndarray) -> np.ndarray:
    """Indices of the slices of an (N, H, W) label stack with any foreground pixel."""
    return np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))


def foreground_groups(labels: np.ndarray) -> list[np.ndarray]:
    """The slices holding each foreground label value present (one group when binary)."""
    flat = labels.reshape(labels.shape[0], -1)
    top = int(flat.max(initial=0))
    if top <= 1:
        return [foreground_slices(labels)]
    groups = [np.flatnonzero((flat == v).any(axis=1)) for v in range(1, top + 1)]
    return [g for g in groups if g.size]


class ForegroundSampler(Sampler[int]):
    """``num_samples`` indices per epoch, a share ``fraction`` forced onto foreground slices.

    Args:
        num_samples: slices in the training set.
        foreground: indices of the slices that contain foreground, or one such array
            per foreground label (:func:`foreground_groups`).
        fraction: probability that a draw is taken from ``foreground`` (0 … 1).
        seed: base seed; epoch ``e`` uses ``(seed, e)``.
        epoch_length: draws per epoch (default ``num_samples``: one permutation of the
            slices; more: whole permutations one after the other, cut to this length).
    """

    def __init__(self, num_samples: int, foreground: np.ndarray, fraction: float, seed: int = 0,
                 epoch_length: int | None = None):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.dataset_size = int(num_samples)
        self.num_samples = int(num_samples if epoch_length is None else epoch_length)
        groups = foreground if isinstance(foreground, (list, tuple)) else [foreground]
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """The epoch's draws (what :meth:`__iter__` yields)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        passes = -(-self.num_samples // self.dataset_size)
        order = np.concatenate([rng.permutation(self.dataset_size) for _ in range(passes)])[:self.num_samples]
        if not self.groups or self.fraction == 0.0:
            return order
        forced = rng.random(self.num_samples) < self.fraction
        if len(self.groups) == 1:
            order[forced] = rng.choice(self.groups[0], size=int(forced.sum()), replace=True)
            return order
        which = rng.integers(len(self.groups), size=int(forced.sum()))
        picks = np.empty(which.size, dtype=np.int64)
        for c, group in enumerate(self.groups):
            picks[which == c] = rng.choice(group, size=int((which == c).sum()), replace=True)
        order[forced] = picks
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
