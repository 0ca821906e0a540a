"""The shared parameter checks (medseg.checks): one message style for every argument."""

import math

import numpy as np
import pytest

from medseg.checks import check_bool, check_choice, check_int, check_real


def test_check_real_converts_and_keeps_closed_bounds():
    assert check_real("p", 0, 0.0, 1.0) == 0.0 and isinstance(check_real("p", 0, 0.0, 1.0), float)
    assert check_real("p", 1.0, 0.0, 1.0) == 1.0
    assert check_real("p", np.float32(0.5), 0.0, 1.0) == 0.5


@pytest.mark.parametrize("value, kw, message", [
    (1.0, {"high_open": True}, r"^p must be in \[0, 1\), got 1.0$"),
    (0.0, {"low_open": True}, r"^p must be in \(0, 1\], got 0.0$"),
    (-0.1, {}, r"^p must be in \[0, 1\], got -0.1$"),
    (float("nan"), {}, r"^p must be in \[0, 1\], got nan$"),
    (True, {}, r"^p must be a number in \[0, 1\], got True$"),
    ("0.5", {}, r"^p must be a number in \[0, 1\], got '0.5'$"),
    (None, {}, r"^p must be a number in \[0, 1\], got None$"),
])
def test_check_real_refuses_with_name_range_and_value(value, kw, message):
    with pytest.raises(ValueError, match=message):
        check_real("p", value, 0.0, 1.0, **kw)


def test_check_real_half_and_unbounded_ranges():
    assert check_real("lr", math.inf, 0.0, math.inf) == math.inf  # closed at infinity
    with pytest.raises(ValueError, match=r"^k must be a finite number >= 0, got inf$"):
        check_real("k", math.inf, 0.0, math.inf, high_open=True)
    with pytest.raises(ValueError, match=r"^eps must be a number > 0, got 0$"):
        check_real("eps", 0, 0.0, math.inf, low_open=True)
    with pytest.raises(ValueError, match=r"^x must be a number, got nan$"):
        check_real("x", float("nan"), -math.inf, math.inf)
    assert check_real("x", -1e300, -math.inf, math.inf) == -1e300


def test_check_int():
    assert check_int("depth", 4, 1, 6) == 4 and type(check_int("n", np.int64(3), 0)) is int
    assert check_int("seed", 0, 0) == 0 and check_int("x", -5, None) == -5
    for value in (True, 2.0, "3", None):  # a bool, a float, text are not integers here
        with pytest.raises(ValueError, match=f"^n must be an integer >= 1, got {value!r}$"):
            check_int("n", value, 1)
    with pytest.raises(ValueError, match=r"^depth must be an integer in \[1, 6\], got 7$"):
        check_int("depth", 7, 1, 6)
    with pytest.raises(ValueError, match=r"^block_size must be an integer >= 1, got 0$"):
        check_int("block_size", 0, 1)


def test_check_bool_takes_only_true_or_false():
    assert check_bool("flag", True) is True and check_bool("flag", False) is False
    for value in (1, 0, "true", None):
        with pytest.raises(ValueError, match=f"^flag must be true or false, got {value!r}$"):
            check_bool("flag", value)


def test_check_choice():
    assert check_choice("mask", "zero", ("laplace", "zero")) == "zero"
    assert check_choice("channels", 3.0, (1, 3)) == 3 and type(check_choice("channels", 3.0, (1, 3))) is int
    with pytest.raises(ValueError, match=r"^mask must be one of laplace, zero, got 'gauss'$"):
        check_choice("mask", "gauss", ("laplace", "zero"))
    with pytest.raises(ValueError, match=r"^channels must be one of 1, 3, got True$"):
        check_choice("channels", True, (1, 3))  # a bool is not the number 1
    with pytest.raises(ValueError, match=r"must be one of"):
        check_choice("mask", ["zero"], ("laplace", "zero"))  # unhashable values are refused, not crashed on
