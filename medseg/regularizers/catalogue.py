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
