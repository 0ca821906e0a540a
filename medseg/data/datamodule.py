"""The LightningDataModule: cached slices → MONAI transforms → DataLoaders.

* ``train``: every axial slice (or frame) of the training cases, shuffled — or,
  with ``data.foreground_fraction`` > 0, drawn by
  :class:`~medseg.data.sampling.ForegroundSampler` — with the MONAI augmentation of
  :mod:`medseg.data.transforms`; items are
  ``{"image": (C, H, W) float32, "label": (1, H, W) float32}``.
* ``val`` / ``test`` (and ``train`` for the train/test gap): one item per case —
  ``{"case_id": str, "image": (N, C, H, W) float32, "native_label": (N, Y, X) uint8,
  "spacing": (z, y, x) mm, or (1, 1) for a BAGLS frame}`` — so metrics are computed
  per CT scan over the whole volume (or per frame) on
  the case's native grid.

``prepare_data`` builds the slice cache (rank 0 only under DDP); ``setup`` loads
the cached arrays into memory.

Under DDP nothing here shards by hand: Lightning replaces the samplers with a
``DistributedSampler`` (``use_distributed_sampler``, on by default) — shuffled for
training, in order for the case loaders, padded by repeating cases so every rank
gets as many batches; :class:`~medseg.training.module.SegmentationModule` gathers
the per-case rows and drops the repeats, so each case is scored exactly once.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from monai.data import DataLoader as MonaiDataLoader
from torch.utils.data import DataLoader, Dataset

from .cache import SliceCache, prepare
from .sampling import ForegroundSampler, foreground_groups
from .transforms import train_transforms


class SliceDataset(Dataset):
    """All slices of a set of cases, served through MONAI transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.images = images  # (N, C, H, W) float16
        self.labels = labels  # (N, H, W) uint8
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "image": torch.from_numpy(self.images[i].astype(np.float32)),
            "label": torch.from_numpy(self.labels[i][None].astype(np.float32)),
        }
        return self.transform(item) if self.transform is not None else item


class CaseDataset(Dataset):
    """One item per case (a CT scan or a frame) for evaluation."""

    def __init__(self, cache: SliceCache, case_ids: list[str]):
        self.cache = cache
        self.case_ids = list(case_ids)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        cid = self.case_ids[i]
        entry = self.cache.load(cid)
        return {
            "case_id": cid,
            "image": torch.from_numpy(entry["image"].astype(np.float32)),
            "native_label": torch.from_numpy(entry["native_label"]),
            "spacing": entry["spacing"],
        }


def first_item(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate for case loaders (batch size 1): the case itself, unstacked."""
    return batch[0]


class SegmentationDataModule(pl.LightningDataModule):
    """Serves a split of Pancreas-CT or BAGLS from the slice cache."""

    def __init__(self, cfg: Mapping[str, Any], split: Mapping[str, Any], progress: bool = True):
        super().__init__()
        self.cfg = cfg
        self.split = split
        self.progress = progress
        self.cache = SliceCache(cfg["data"])
        self.train_set: SliceDataset | None = None

    def prepare_data(self) -> None:
        prepare(self.cfg, self.split, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._slices(self.split["train"], augment=self.cfg["data"]["augment"])

    def _slices(self, case_ids: list[str], augment: bool) -> SliceDataset:
        images, labels = [], []
        for cid in case_ids:
            entry = self.cache.load(cid)
            images.append(entry["image"])
            labels.append(entry["label"])
        transform = train_transforms(augment, self.cfg["data"]["mirror_axes"])
        # MONAI's random transforms draw from their own RandomState: seed it from
        # torch so `seed_everything` makes augmentation reproducible. Under DDP every
        # rank has the same torch seed: add the rank so ranks augment differently
        # (rank 0, and a single process, use the seed itself).
        rank = self.trainer.global_rank if self.trainer is not None else 0
        transform.set_random_state(seed=int((torch.initial_seed() + rank) % (2**32)))
        return SliceDataset(np.concatenate(images), np.concatenate(labels), transform)

    def train_sampler(self) -> ForegroundSampler | None:
        """``data.foreground_fraction`` > 0 or ``train.samples_per_epoch`` set: the foreground-aware
        sampler (that many draws per epoch); else None (a plain shuffle).

        Seeded from torch's seed (``seed_everything``), the same on every DDP rank, so
        that Lightning's sampler wrapper shards one shared list of draws.
        """
        fraction = self.cfg["data"]["foreground_fraction"]
        length = self.cfg["train"].get("samples_per_epoch")
        if fraction == 0.0 and length is None:
            return None
        return ForegroundSampler(len(self.train_set), foreground_groups(self.train_set.labels), fraction,
                                 seed=int(torch.initial_seed() % (2**63)), epoch_length=length)

    def train_dataloader(self) -> DataLoader:
        workers = self.cfg["data"]["num_workers"]
        sampler = self.train_sampler()
        return MonaiDataLoader(
            self.train_set, batch_size=self.cfg["train"]["batch_size"], shuffle=sampler is None,
            sampler=sampler, num_workers=workers, persistent_workers=workers > 0, drop_last=False,
            pin_memory=torch.cuda.is_available(),
        )

    def case_dataloader(self, split_name: str) -> DataLoader:
        workers = min(self.cfg["data"]["num_workers"], 2)
        return DataLoader(CaseDataset(self.cache, self.split[split_name]), batch_size=1,
                          shuffle=False, num_workers=workers, collate_fn=first_item)

    def val_dataloader(self) -> DataLoader:
        return self.case_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.case_dataloader("test")
