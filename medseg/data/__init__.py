"""Data layer: readers for Pancreas-CT (DICOM/NIfTI, TCIA and MSD layouts) and BAGLS,
dataset discovery, the synthetic default datasets and the integrity check.

The readers know file formats and nothing about training; splits, the slice
cache and the DataModule build on them.
"""

# --- readers, discovery, synthetic data, integrity check (data helper) -----------------
from .bagls import BaglsFrame, load_bagls_frame, read_frame_image
from .check import CheckReport, check_dataset
from .ct import read_ct_volume
from .discovery import CaseRef, detect_layout, discover_bagls, discover_pancreas
from .geometry import Geometry
from .pancreas import PancreasCase, load_pancreas_case
from .synth_abdomen import abdomen_phantom, synth_abdomen
from .synth_bagls import bagls_frame, synth_bagls
from .synth_pancreas import pancreas_phantom, synth_pancreas
# --- end of the data helper's block ----------------------------------------------------

__all__ = [
    "Geometry", "PancreasCase", "load_pancreas_case", "read_ct_volume",
    "BaglsFrame", "load_bagls_frame", "read_frame_image",
    "CaseRef", "detect_layout", "discover_pancreas", "discover_bagls",
    "synth_pancreas", "synth_bagls", "pancreas_phantom", "bagls_frame",
    "synth_abdomen", "abdomen_phantom",
    "CheckReport", "check_dataset",
]
