"""Parameter checks: one style for every constructor argument and config key.

Each check returns the value converted (``float``, ``int``, the matching choice) or
raises :class:`ValueError` with a one-line message naming the parameter, what it
accepts and the value received::

    check_real("p", 1.5, 0.0, 1.0, high_open=True)  # ValueError: p must be in [0, 1), got 1.5

Callers re-key the error for the user: :func:`medseg.regularizers.build` turns it
into a :class:`~medseg.errors.ConfigError` naming the regularizer, the models prefix
``model``, and :mod:`medseg.config` names the config key. A ``bool`` is never taken
for a number (``True`` is not ``1`` here), and NaN is inside no range.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable


def check_real(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
               high_open: bool = False) -> float:
    """Return ``float(value)`` if it is a real number inside the interval, else raise.

    ``low_open`` / ``high_open`` exclude the respective end point; ``-inf`` / ``inf``
    leave that side unbounded (open: infinity itself is refused too).
    """
    bounded = not math.isinf(low) and not math.isinf(high)
    finite = "finite " if (math.isinf(low) and low_open) or (math.isinf(high) and high_open) else ""
    number = " ".join(filter(None, [f"a {finite}number", _range(low, high, low_open, high_open)]))
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be {number}, got {value!r}")
    v = float(value)
    if (math.isnan(v) or (v <= low if low_open else v < low)
            or (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be {_range(low, high, low_open, high_open) if bounded else number}, "
                         f"got {value!r}")
    return v


def check_int(name: str, value: Any, low: int | None, high: int | None = None) -> int:
    """Return ``int(value)`` if it is an integer in ``[low, high]`` (None: unbounded), else raise."""
    if high is None:
        accepted = "an integer" if low is None else f"an integer >= {low}"
    else:
        accepted = f"an integer <= {high}" if low is None else f"an integer in [{low}, {high}]"
    if (isinstance(value, bool) or not isinstance(value, Integral)
            or (low is not None and value < low) or (high is not None and value > high)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


#: the largest seed every random number generator medseg seeds accepts (NumPy's legacy
#: ``RandomState``, ``random``, torch, Lightning's ``seed_everything``): seeds are in [0, 2**32 − 1]
SEED_MAX = 2 ** 32 - 1


def check_seed(name: str, value: Any) -> int:
    """Return ``int(value)`` if it is a seed, an integer in ``[0, 2**32 − 1]`` (:data:`SEED_MAX`), else raise."""
    return check_int(name, value, 0, SEED_MAX)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not 0/1, not a string), else raise."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return the choice equal to ``value`` (``1.0`` matches ``1``; a bool matches only a bool), else raise."""
    choices = tuple(choices)
    for c in choices:
        if isinstance(value, bool) == isinstance(c, bool) and _equal(value, c):
            return c
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. an array compared with a string
        return False


def _range(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """The accepted range as text: ``in [0, 1)``, ``>= 0``, ``< 1``; empty when unbounded."""
    if not math.isinf(low) and not math.isinf(high):
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    sides = [] if math.isinf(low) else [f"{'>' if low_open else '>='} {low:g}"]
    sides += [] if math.isinf(high) else [f"{'<' if high_open else '<='} {high:g}"]
    return " and ".join(sides)  # at most one side here
