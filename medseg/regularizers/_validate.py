"""Parameter checks shared by the dropout-family regularizers.

Each check raises :class:`ValueError` with a one-line message naming the parameter,
the accepted range and the value received (``"p must be in [0, 1), got 1.5"``);
:func:`medseg.regularizers.build` turns it into a :class:`~medseg.errors.ConfigError`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def check_real(name: str, value, low: float, high: float, *, low_open: bool = False,
               high_open: bool = False) -> float:
    """Return ``float(value)`` if it is a real number inside the interval, else raise.

    ``low_open`` / ``high_open`` exclude the respective end point.
    """
    interval = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    v = float(value)
    if (math.isnan(v) or (v <= low if low_open else v < low)
            or (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_int(name: str, value, low: int) -> int:
    """Return ``int(value)`` if it is an integer ``>= low``, else raise."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:g}"
