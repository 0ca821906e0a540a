"""Tiny nnU-Net raw datasets written by hand for the reader's tests (independent of medseg's
own generator): spheres of several labels in several channels, some cases in another orientation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk


def sphere_case(seed: int, shape=(10, 24, 24), labels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(C=2, Z, Y, X) int16 intensities and a (Z, Y, X) label map with values 0 … labels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    label = np.zeros(shape, np.uint8)
    for v in range(1, labels + 1):
        c = rng.uniform([3, 6, 6], [shape[0] - 3, shape[1] - 6, shape[2] - 6])
        r = 2.0 + 3.0 / v
        label[((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r * r] = v
    base = rng.normal(0, 10, shape)
    ch0 = base + 40.0 * label
    ch1 = base + 100.0 * (label == 1) - 50.0 * (label == 2) + 20.0 * label
    return np.stack([ch0, ch1]).astype(np.int16), label


def write_nnunet(root: Path, *, cases: int = 4, labels: int = 3, channels: Sequence[str] = ("CT", "CT"),
                 ras_every: int = 0, test_cases: int = 0, spacing=(0.8, 0.8, 2.5),
                 decathlon: bool = False) -> Path:
    """A dataset folder ``root`` with ``cases`` training cases (NIfTI)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    names = ["background"] + [f"organ{v}" for v in range(1, labels + 1)]

    def write(arr, path, code="LPS"):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin((-10.0, 5.0, 20.0))
        if code != "LPS":
            img = sitk.DICOMOrient(img, code)
        sitk.WriteImage(img, str(path))

    training = []
    for i in range(cases + test_cases):
        image, label = sphere_case(i, labels=labels)
        cid = f"case_{i:03d}"
        code = "RAS" if ras_every and i % ras_every == ras_every - 1 else "LPS"
        folder = "imagesTr" if i < cases else "imagesTs"
        (root / folder).mkdir(exist_ok=True)
        if decathlon:
            write(image[: len(channels)].transpose(0, 1, 2, 3)[0], root / folder / f"{cid}.nii.gz", code)
        else:
            for c in range(len(channels)):
                write(image[c], root / folder / f"{cid}_{c:04d}.nii.gz", code)
        if i < cases:
            write(label, root / "labelsTr" / f"{cid}.nii.gz", code)
            training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    if decathlon:
        meta = {"name": "Tiny", "modality": {str(i): c for i, c in enumerate(channels)},
                "labels": {str(v): n for v, n in enumerate(names)}, "numTraining": cases,
                "training": training, "test": []}
    else:
        meta = {"channel_names": {str(i): c for i, c in enumerate(channels)},
                "labels": {n: v for v, n in enumerate(names)}, "numTraining": cases,
                "file_ending": ".nii.gz", "name": "Tiny"}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


def write_nnunet_png(root: Path, *, cases: int = 3, rgb: bool = True) -> Path:
    """A 2D dataset of PNG frames (RGB in one file, as nnU-Net's natural images)."""
    from PIL import Image

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(cases):
        rng = np.random.default_rng(i)
        label = np.zeros((20, 30), np.uint8)
        label[5:12, 4 + i:15 + i] = 1
        label[14:18, 20:26] = 2
        img = (rng.uniform(0, 60, (20, 30, 3)) + 80 * label[..., None]).astype(np.uint8)
        Image.fromarray(img if rgb else img[..., 0]).save(root / "imagesTr" / f"f{i}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"f{i}.png")
    channels = {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "gray"}
    meta = {"channel_names": channels, "labels": {"background": 0, "fold": 1, "gap": 2},
            "numTraining": cases, "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
