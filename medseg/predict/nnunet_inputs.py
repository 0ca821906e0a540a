"""New cases for a checkpoint of an nnunet dataset, in nnU-Net's own input convention.

``nnUNetv2_predict -i FOLDER`` takes a folder of ``{case}_{XXXX}{ending}`` files —
one per channel, ``XXXX`` the 4-digit channel index in ``channel_names`` order —
and writes ``{case}{ending}`` label maps. ``medseg predict`` with such a checkpoint
takes the same (:func:`discover_channel_inputs`):

* a folder: its image files are grouped by case; every file must be named
  ``{case}_{XXXX}{ending}`` (refused otherwise, naming the file) — unless none is:
  then each file is one case holding every channel, as the Decathlon's ``imagesTs``
  (``pancreas_001.nii.gz``; a 4D file for several channels); subfolders are searched
  by the same rule; a folder that is one DICOM series is one case of a one-channel
  checkpoint;
* channel files given directly, grouped by case the same way; a file given directly
  that is not so named is one whole case (a one-channel volume, an RGB frame, or a
  4D file holding every channel);
* 3D files through SimpleITK (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``,
  ``.nhdr``), 2D frames (``.png``, …) as nnU-Net's ``NaturalImage2DIO`` reads them
  (an RGB file is three channels).

Before any case is read in full (:func:`check_case_headers`, headers only): every
channel of every case is present (a missing one is named by the file it should be),
no channel index beyond the checkpoint's, the channels add up to the checkpoint's
and lie on one grid (size, spacing, origin, direction within nnU-Net's tolerance).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..data.geometry import Geometry
from ..errors import DataError
from .inputs import (PredictInput, _file_input, _folder_inputs, _headers, check_names, classify,
                     image_information, why)

#: volume endings read through SimpleITK (nnunet checkpoints), longest first
VOLUME_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")
#: 2D natural-image endings (nnU-Net's NaturalImage2DIO)
FRAME_ENDINGS = (".png", ".jpg", ".jpeg")
#: the label map's ending for each input ending: nnU-Net writes the dataset's own ending;
#: header + data pairs become one file, lossy or natural-image endings a PNG
OUTPUT_ENDING = {".mhd": ".mha", ".nhdr": ".nrrd", ".jpg": ".png", ".jpeg": ".png"}

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
#: predict's own per-class outputs, skipped when a folder is searched
_OWN_OUTPUT = re.compile(r".+_(prob_.+|uncertainty|variance)\.nii\.gz$|.+_overlay\.png$", re.I)


def ending_of(path: Path) -> str:
    """The file's ending as nnU-Net spells it (``.nii.gz``, ``.png``), or ``""``."""
    name = path.name.lower()
    return next((e for e in VOLUME_ENDINGS + FRAME_ENDINGS if name.endswith(e)), "")


def output_ending(inp: PredictInput) -> str:
    """The ending of the case's label map: the input's own (nnU-Net's output naming), DICOM → .nii.gz."""
    if inp.fmt != "channels":
        return ".nii.gz"
    return OUTPUT_ENDING.get(inp.ending, inp.ending)


def files_per_case(channels: Sequence[str], ending: str) -> int:
    """Channel files per case: one per channel, except RGB frames (one file, 3 channels)."""
    return 1 if ending in FRAME_ENDINGS and len(channels) == 3 else len(channels)


def _listed(channels: Sequence[str]) -> str:
    return f"{len(channels)} channel(s) ({', '.join(channels)})"


def discover_channel_inputs(paths: Iterable[str | os.PathLike],
                            channels: Sequence[str]) -> list[PredictInput]:
    """The cases of the user's INPUT arguments for a checkpoint taking ``channels``."""
    inputs: list[PredictInput] = []
    direct: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _folder_inputs(p, VOLUME_ENDINGS, _OWN_OUTPUT.match)
            files = [i for i in found if i.fmt in ("nifti", "frame")]
            inputs += [i for i in found if i.fmt not in ("nifti", "frame")]
            by_folder: dict[Path, list[Path]] = {}
            for i in files:
                by_folder.setdefault(i.path.parent, []).append(i.path)
            for folder, group in by_folder.items():
                inputs += _group(group, channels, folder)
        elif p.is_file():
            kind = classify(p, VOLUME_ENDINGS)
            if kind is None:
                raise DataError(f"{p}: unsupported format (expected {{case}}_{{XXXX}} channel files "
                                f"({', '.join(VOLUME_ENDINGS + FRAME_ENDINGS)}), a DICOM file or series "
                                "folder)")
            if kind == "dicom":
                headers = _headers([p])
                if p not in headers:
                    raise DataError(f"{p}: a DICOMDIR index file, not an image; give the series folder")
                inputs.append(_file_input(p, kind, headers))
            else:
                direct.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if direct:
        inputs += _group(direct, channels, None)
    if not inputs:
        raise DataError("no inputs given")
    check_names(inputs)
    return inputs


def _group(files: Sequence[Path], channels: Sequence[str], folder: Path | None) -> list[PredictInput]:
    """Channel files → one input per case. ``folder``: the files of one folder (names must
    follow the convention, unless none does: the Decathlon's one file per case); None:
    files given directly (a file not so named is a case)."""
    def stem(f: Path) -> str:
        return f.name[: len(f.name) - len(ending_of(f))]

    if folder is not None and not any(_CHANNEL.match(stem(f)) for f in files):
        folder = None  # the Decathlon's imagesTs: {case}{ending}, every channel in one file
    cases: dict[str, dict[int | None, Path]] = {}
    for f in files:
        ending = ending_of(f)
        m = _CHANNEL.match(stem(f))
        if m is None and folder is not None:
            raise DataError(f"{f}: not named {{case}}_{{XXXX}}{ending or '.nii.gz'} (nnU-Net's input "
                            "convention: one file per channel, XXXX = 0000, 0001, … in channel order)")
        case, index = (m["case"], int(m["channel"])) if m else (stem(f), None)
        group = cases.setdefault(case, {})
        if index in group or (group and (index is None or None in group)):
            other = group.get(index) or next(iter(group.values()))
            raise DataError(f"{f}: another file of case '{case}' is {other}; give each channel once")
        group[index] = f
    out = []
    for case, group in cases.items():
        out.append(_case(case, group, channels, folder))
    return out


def _case(case: str, group: dict[int | None, Path], channels: Sequence[str],
          folder: Path | None) -> PredictInput:
    first = next(iter(group.values()))
    endings = {ending_of(f) for f in group.values()}
    if len(endings) > 1:
        raise DataError(f"{first}: the channel files of case '{case}' have different endings "
                        f"({', '.join(sorted(endings))})")
    (ending,) = endings
    kind = "frame" if ending in FRAME_ENDINGS else "ct"
    source = folder or first
    if None in group:  # one file for the whole case
        return PredictInput(case, first, kind, "channels", source, channels=(first,), ending=ending)
    n = files_per_case(channels, ending)
    for i in sorted(group):
        if i >= n:
            raise DataError(f"{group[i]}: channel {i} of case '{case}', but the checkpoint takes "
                            f"{_listed(channels)}")
    where = first.parent
    for i in range(n):
        if i not in group:
            raise DataError(f"{where / f'{case}_{i:04d}{ending}'}: channel {i} ({channels[i]}) of case "
                            f"'{case}' not found; the checkpoint takes {_listed(channels)}, one "
                            f"{{case}}_{{XXXX}}{ending} file each")
    files = tuple(group[i] for i in range(n))
    return PredictInput(case, files[0], kind, "channels", source, channels=files, ending=ending)


# --------------------------------------------------------------------------- checks


def check_case_kind(inp: PredictInput, channels: Sequence[str], modality: str, checkpoint: Path,
                    trained_ending: str | None = None) -> None:
    """A DICOM input is one channel: only a one-channel volume checkpoint takes it. When the
    checkpoint records the ending of its training files (``trained_ending``), a 2D frame
    is refused by a checkpoint trained on volumes and a volume by one trained on frames."""
    if trained_ending:
        trained_2d = trained_ending.lower() in FRAME_ENDINGS + (".bmp", ".tif", ".tiff")
        if trained_2d != (inp.kind == "frame"):
            what = "a 2D frame" if inp.kind == "frame" else "a 3D volume"
            wants = "2D frames" if trained_2d else "3D volumes"
            raise DataError(f"{inp.source}: is {what}, but checkpoint {checkpoint} was trained on "
                            f"{wants} ({trained_ending} files)")
    if inp.fmt == "channels":
        return
    if inp.kind == "ct" and len(channels) == 1:
        return
    what = "a DICOM series" if inp.fmt == "dicom-series" else "a DICOM file"
    raise DataError(f"{inp.source}: is {what} (one channel), but checkpoint {checkpoint} takes "
                    f"{_listed(channels)}; give {{case}}_{{XXXX}} files, one per channel "
                    "(nnU-Net's input convention)")


def header_of(path: Path) -> tuple[int, Geometry]:
    """(channels, grid) of one file from its header alone (SimpleITK / PIL)."""
    if ending_of(path) in FRAME_ENDINGS:
        return _frame_header(path)
    reader = image_information(path)
    if reader.GetNumberOfComponents() != 1:
        raise DataError(f"{path}: {reader.GetNumberOfComponents()} components per voxel; nnU-Net "
                        "stores one channel per file")
    dim, size = reader.GetDimension(), reader.GetSize()
    o, s, d = reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection()
    if dim == 2:
        return 1, Geometry((o[0], o[1], 0.0), (s[0], s[1], 1.0),
                           (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0), (*size, 1))
    if dim == 3:
        return 1, Geometry(o, s, d, size)
    if dim == 4:  # the Decathlon's one file holding every channel
        return int(size[3]), Geometry(o[:3], s[:3], tuple(d[r * 4 + c] for r in range(3) for c in range(3)),
                                      size[:3])
    raise DataError(f"{path}: a {dim}D image; expected a 3D volume (or 2D frame)")


def _frame_header(path: Path) -> tuple[int, Geometry]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            im.verify()  # PNG: every chunk's CRC; JPEG: the markers
    except Exception as exc:
        raise DataError(f"{path}: unreadable image ({why(exc)})") from None
    gray = mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")
    return (1 if gray else 3), Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1),
                                        (w, h, 1))


def check_case_headers(inp: PredictInput, channels: Sequence[str]) -> None:
    """The case's files hold the checkpoint's channels, on one grid (headers only)."""
    from ..data.nnunet import geometry_mismatch

    count, grid, first = 0, None, inp.channels[0]
    for f in inp.channels:
        n, g = header_of(f)
        if grid is None:
            grid = g
        elif (diff := geometry_mismatch(g, grid)) is not None:
            raise DataError(f"{f}: channel grid differs from {first.name} ({diff}); the channels of "
                            f"case '{inp.name}' must share one grid")
        count += n
    if count != len(channels):
        raise DataError(f"{first}: case '{inp.name}' holds {count} channel(s), but the checkpoint "
                        f"takes {_listed(channels)}")


__all__ = ["discover_channel_inputs", "check_case_kind", "check_case_headers", "header_of",
           "ending_of", "output_ending", "files_per_case", "VOLUME_ENDINGS", "FRAME_ENDINGS"]
