"""``medseg predict``: masks, probabilities and uncertainty for new scans and frames.

The package is split by job, around one reusable object:

* :mod:`.inputs`    — INPUT arguments → cases; header, SOP class and modality checks;
* :mod:`.nnunet_inputs` — for checkpoints of nnU-Net raw datasets: nnU-Net's input
  convention, ``{case}_{XXXX}{ending}`` channel files grouped by case and checked;
* :mod:`.readers`   — one case read in full through the dataset readers;
* :mod:`.members`   — the checkpoints (given, or every run of a method in an
  experiment), loaded and checked against each other;
* :mod:`.inference` — :class:`Predictor`: networks loaded once, then any number of
  volumes or frames; ensembles, test-time mirroring, Monte Carlo sampling;
* :mod:`.writers`   — output names and the NIfTI / PNG / DICOM SEG / overlay writers;
* :mod:`.job`       — :func:`predict`, the command: check everything, predict,
  write into staging, commit.

The checkpoint carries its preprocessing (dataset, window, size, channels; an nnunet
dataset's plan and labels; see :mod:`medseg.training.checkpoint`), so a new input goes
through exactly what the training and test cases went through, and a single
checkpoint's mask equals the one ``medseg evaluate`` scores (``cases.csv``).

In a notebook::

    from medseg.predict import Predictor
    predictor = Predictor(["run1/checkpoints/best.ckpt", "run2/checkpoints/best.ckpt"], tta=True)
    prediction = predictor.predict_ct(hu)      # (Z, Y, X) HU → mask, probability, entropy, variance
    # an nnunet checkpoint: (C, Z, Y, X) channels with their geometry; every class's probability
    prediction = Predictor("run/checkpoints/best.ckpt").predict_volume(channels, geometry, classes=True)
"""

from .inference import Prediction, Predictor, mirrorings, resolve_device
from .inputs import PredictInput, check_inputs, discover_inputs
from .job import CaseResult, PredictReport, format_report, predict, predict_one
from .members import method_checkpoints

__all__ = ["mirrorings", "Prediction", "Predictor", "resolve_device", "PredictInput",
           "check_inputs", "discover_inputs", "CaseResult", "PredictReport", "format_report",
           "predict", "predict_one", "method_checkpoints"]
