"""Regularizers: Heuristic Dropout and the comparison catalogue.

Every method is an ``nn.Module`` importable from here and buildable by its registry key::

    from medseg.regularizers import HeuristicDropout, heuristic_dropout
    reg = HeuristicDropout(rate=0.1, k=3.0)           # or regularizers.build("heuristic", k=3.0)
    y = heuristic_dropout(x, rate=0.1, k=2.0)         # functional form, x (B,C,H,W) or (B,C,D,H,W)

    from medseg import regularizers
    regularizers.available()                          # ['none', 'heuristic', 'dropout', ...]
    regularizers.register_monai()                     # MONAI: dropout=("heuristic", {...})

The definition of Heuristic Dropout is :func:`heuristic_dropout_reference`. See
``base.py`` for the placement contract, ``catalogue.py`` for the list and
``diagnostics.py`` for what Heuristic Dropout drops in a trained network.
"""

from .base import Regularizer
from .registry import available, build, check_params, get, parameters, register, spec_to_factory
from .channel_dropblock import ChannelDropBlock
from .corrdrop import ChannelCorrDrop, SpatialCorrDrop
from .dropblock import DropBlock
from .dropout import Dropout, GaussianDropout, SpatialDropout, Uout
from .focused_dropout import FocusedDropout
from .heuristic import HeuristicDropout, heuristic_dropout, heuristic_dropout_reference
from .identity import NoRegularizer
from .input_level import Cutout, InputDropout
from .monai_factory import register_monai
from .sbdrop import SubBatchDrop
from .stochastic_depth import StochasticDepth
from .structural_dropout import StructuralDropout
from .wcd import WeightedChannelDropout

__all__ = [
    "Regularizer", "available", "build", "check_params", "get", "parameters",
    "register", "spec_to_factory", "register_monai",
    "heuristic_dropout", "heuristic_dropout_reference",
    "NoRegularizer", "HeuristicDropout", "Dropout", "SpatialDropout", "DropBlock",
    "StochasticDepth", "WeightedChannelDropout", "FocusedDropout", "SubBatchDrop",
    "SpatialCorrDrop", "ChannelCorrDrop", "ChannelDropBlock", "GaussianDropout", "Uout",
    "StructuralDropout", "Cutout", "InputDropout",
]
