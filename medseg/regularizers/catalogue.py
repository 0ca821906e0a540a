"""The catalogue: imports every regularizer module so each registers its key.

Order of :func:`medseg.regularizers.available` follows :data:`ORDER` (the table in
``shared/spec/regularizers.md``).

Not applicable to 2D segmentation CNNs, and why (the choice was made, not missed):

* Neuron-specific dropout — needs per-class validation means of a classifier's neurons;
* Gating Dropout — all-to-all routing of mixture-of-experts transformers;
* Dropout in hierarchical mixtures of experts — tree gating of experts;
* Clustering-based adaptive dropout — clusters fully-connected features of a classifier.
"""

from . import identity  # noqa: F401  none
from . import heuristic  # noqa: F401  heuristic
from . import dropout  # noqa: F401  dropout, spatial_dropout, gaussian_dropout, uout
from . import dropblock  # noqa: F401  dropblock
from . import stochastic_depth  # noqa: F401  stochastic_depth
from . import wcd  # noqa: F401  wcd
from . import focused_dropout  # noqa: F401  focused_dropout
from . import sbdrop  # noqa: F401  sbdrop
from . import corrdrop  # noqa: F401  corrdrop_spatial, corrdrop_channel
from . import channel_dropblock  # noqa: F401  channel_dropblock
from . import structural_dropout  # noqa: F401  structural_dropout
from . import input_level  # noqa: F401  cutout, input_dropout

ORDER = [
    "none", "heuristic", "dropout", "spatial_dropout", "dropblock", "stochastic_depth",
    "wcd", "focused_dropout", "sbdrop", "corrdrop_spatial", "corrdrop_channel",
    "channel_dropblock", "gaussian_dropout", "uout", "structural_dropout", "cutout",
    "input_dropout",
]

NOT_APPLICABLE = {
    "neuron_specific_dropout": "needs per-class validation means of a classifier's neurons",
    "gating_dropout": "all-to-all routing of mixture-of-experts transformers",
    "hierarchical_moe_dropout": "tree gating of hierarchical mixtures of experts",
    "clustering_adaptive_dropout": "clusters fully-connected features of a classifier",
}

#: ``grid.tune: true`` (see :mod:`medseg.experiments.tuning`): each method's default
#: candidate strengths, the same number for every method (an equal tuning budget), the
#: method's default among them. An experiment overrides a list with ``grid.tune_values``.
TUNING_CANDIDATES: dict[str, list[dict[str, float]]] = {
    "heuristic": [{"rate": 0.1, "k": 1.0}, {"rate": 0.1, "k": 2.0}, {"rate": 0.2, "k": 2.0}],
    "dropout": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "spatial_dropout": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "dropblock": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "wcd": [{"keep_ratio": 0.8}, {"keep_ratio": 0.9}, {"keep_ratio": 0.95}],
    "stochastic_depth": [{"p_last": 0.25}, {"p_last": 0.5}, {"p_last": 0.75}],
    "focused_dropout": [{"participation": 0.05}, {"participation": 0.1}, {"participation": 0.2}],
    "gaussian_dropout": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "corrdrop_channel": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "corrdrop_spatial": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
    "structural_dropout": [{"p": 0.05}, {"p": 0.1}, {"p": 0.2}],
}
