"""Reading one case in full: the dataset readers of :mod:`medseg.data`, with one-line errors.

A CT input comes back as float32 HU (Z, Y, X) with its geometry (what the mask is
written in); a DICOM input also keeps its slice files in the volume's z order,
which the DICOM SEG writer references. A frame comes back as its (H, W[, C]) array.
A case of an nnunet checkpoint (:func:`read_channel_case`) comes back as its
(C, Z, Y, X) channels, read by :func:`medseg.data.nnunet.read_channels` exactly as
training read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dicom import order_by_position
from ..errors import DataError, MedsegError
from .inputs import PredictInput, why


@dataclass
class CTCase:
    """A CT volume as read: HU, geometry and (DICOM inputs) the source headers by slice."""

    hu: np.ndarray
    geometry: Any
    sources: list[Path] = field(default_factory=list)  #: DICOM files in the z order of ``hu``


def read_ct(inp: PredictInput) -> CTCase:
    """The input's volume through :func:`medseg.data.read_ct_volume`."""
    from ..data import read_ct_volume

    try:
        hu, geometry = read_ct_volume(inp.path)
    except MedsegError:
        raise
    except Exception as exc:
        raise DataError(f"{inp.path}: unreadable CT volume ({why(exc)})") from None
    hu = np.asarray(hu)
    if hu.ndim != 3 or 0 in hu.shape:
        raise DataError(f"{inp.path}: not a 3D CT volume (array shape {hu.shape})")
    sources = [inp.dicom[i].path for i in order_by_position([f.header for f in inp.dicom])]
    if sources and len(sources) != hu.shape[0]:
        raise DataError(f"{inp.path}: {hu.shape[0]} slices read from {len(sources)} DICOM files")
    return CTCase(hu, geometry, sources)


def read_frame(inp: PredictInput) -> np.ndarray:
    """The frame through :func:`medseg.data.read_frame_image`."""
    from ..data import read_frame_image

    try:
        image = read_frame_image(inp.path)
    except MedsegError:
        raise
    except Exception as exc:
        raise DataError(f"{inp.path}: unreadable image ({why(exc)})") from None
    return np.asarray(image)


@dataclass
class ChannelCase:
    """A case of an nnunet checkpoint as read: (C, Z, Y, X) channels in channel order, the
    grid they lie on (what the label map is written in; None for a 2D frame, which is not
    reoriented) and, for a DICOM input, its source files in z order."""

    image: np.ndarray
    geometry: Any
    sources: list[Path] = field(default_factory=list)
    frame: bool = False


def read_channel_case(inp: PredictInput, description: Any) -> ChannelCase:
    """The case's channels: ``{case}_{XXXX}`` files through :func:`medseg.data.nnunet.read_channels`
    (``description``: the checkpoint's channels and labels, the files' ending), a DICOM
    input as its one channel."""
    from ..data.nnunet import read_channels

    if inp.fmt != "channels":
        case = read_ct(inp)
        return ChannelCase(case.hu[None], case.geometry, case.sources)
    try:
        image, geometry = read_channels(list(inp.channels), description)
    except MedsegError:
        raise
    except Exception as exc:
        raise DataError(f"{inp.path}: unreadable image ({why(exc)})") from None
    if description.is_2d:
        return ChannelCase(image, geometry, frame=True)
    return ChannelCase(image, geometry)
