"""Regularizers: Heuristic Dropout and the comparison catalogue.

Every method is an ``nn.Module`` built by its registry key::

    from medseg import regularizers
    regularizers.available()            # ['none', 'heuristic', 'dropout', ...]
    reg = regularizers.build("heuristic", rate=0.1, k=3.0)

See ``base.py`` for the placement contract and ``catalogue.py`` for the list.
"""

from .base import Regularizer
from .registry import available, build, check_params, get, parameters, register, spec_to_factory

__all__ = [
    "Regularizer", "available", "build", "check_params", "get", "parameters",
    "register", "spec_to_factory",
]
