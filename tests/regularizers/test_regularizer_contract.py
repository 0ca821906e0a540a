"""The contract of ``shared/spec/regularizers.md`` checked for EVERY registered key.

Each key is exercised through its ``placement`` only (slot: ``reg(x)`` on a
(B, C, H, W) feature map; residual: ``reg(h, branch)``; input: ``reg(x)`` on a
(B, 1 or 3, H, W) image). The only per-key knowledge is the table of documented
exceptions below:

* ``EVAL_RULES`` — methods whose evaluation mode is not the identity
  (Stochastic Depth: ``h + p_l·branch(h)``; SBDrop: ``sqrt(1 − γ)·x``);
* ``DETERMINISTIC`` — methods without randomness (the baseline and Heuristic Dropout).

Every behavioural check runs on 2D feature maps (B, C, H, W) and on 3D ones
(B, C, D, H, W): each key either does its natural 3D extension or is listed in
``REFUSES_3D`` and must refuse 5D input with an error naming the method.

Method-specific behaviour (drop fractions, which units are dropped, …) is tested in
the per-method test files.
"""

from __future__ import annotations

import math

import pytest
import torch

from medseg import regularizers
from medseg.errors import ConfigError
from medseg.regularizers.catalogue import ORDER

KEYS = regularizers.available()

#: documented evaluation rules: key -> expected(module, x, branch)
EVAL_RULES = {
    "stochastic_depth": lambda m, x, branch: x + m.survival * branch(x),
    "sbdrop": lambda m, x, branch: x * math.sqrt(1.0 - m.gamma),
}
#: methods with no randomness at all
DETERMINISTIC = {"none", "heuristic"}
#: probability-/fraction-like parameter names: a negative value or one above 1 is invalid
FRACTION_PARAMS = {"p", "rate", "gamma", "keep_ratio", "beta", "p_last", "participation",
                   "apply_prob", "size", "low", "high"}
#: count-like parameter names: 0 is invalid
COUNT_PARAMS = {"block_size", "holes", "bins", "min_channels"}
#: weights that must not be negative
NONNEGATIVE_PARAMS = {"k"}

#: keys that refuse (B, C, D, H, W) input (none at present: all extend to 3D)
REFUSES_3D: set[str] = set()
NDIMS = [2, 3]

STAGE = (1, 4)  # every module is configured as slot 1 of 4 (as a model would do)


def make(key: str, **params) -> regularizers.Regularizer:
    module = regularizers.build(key, **params)
    module.configure_stage(*STAGE)
    return module


def placement(key: str) -> str:
    return regularizers.get(key).placement


def sample_input(key: str, dtype=torch.float32, seed: int = 123, ndim: int = 2) -> torch.Tensor:
    """A positive, non-constant input of the shape the key's placement sees (2D or 3D)."""
    g = torch.Generator().manual_seed(seed)
    if placement(key) == "input":
        shape = (4, 3, 32, 32) if ndim == 2 else (2, 3, 8, 16, 16)
    else:
        shape = (4, 16, 12, 12) if ndim == 2 else (4, 16, 6, 6, 6)
    return (torch.rand(shape, generator=g) * 2 + 0.05).to(dtype)


def make_branch(channels: int, ndim: int = 2) -> torch.nn.Module:
    g = torch.Generator().manual_seed(7)
    conv = (torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d)(channels, channels, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.1)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
    return conv


def call(module, x, branch=None):
    if placement(module.key) == "residual":
        return module(x, branch if branch is not None else make_branch(x.shape[1], x.dim() - 2))
    return module(x)


def runs_in(key: str, ndim: int) -> bool:
    return ndim == 2 or key not in REFUSES_3D


KEYS_NDIM = [(key, ndim) for ndim in NDIMS for key in KEYS if runs_in(key, ndim)]
NDIM_IDS = [f"{key}-{ndim}d" for key, ndim in KEYS_NDIM]


def test_catalogue_is_complete():
    # every method of the catalogue table is registered, in catalogue order
    assert KEYS[: len(ORDER)] == ORDER
    for key in KEYS:
        assert placement(key) in ("slot", "residual", "input"), key


@pytest.mark.parametrize("key,ndim", KEYS_NDIM, ids=NDIM_IDS)
def test_eval_mode_rule_and_no_randomness(key, ndim):
    m = make(key).eval()
    x = sample_input(key, ndim=ndim)
    branch = make_branch(x.shape[1], ndim)
    state = torch.get_rng_state()
    with torch.no_grad():
        y = call(m, x, branch)
        assert torch.equal(torch.get_rng_state(), state), "eval mode consumed random numbers"
        if key in EVAL_RULES:
            expected = EVAL_RULES[key](m, x, branch)
            assert torch.allclose(y, expected, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(y, x)
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("key,ndim", KEYS_NDIM, ids=NDIM_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_train_mode_keeps_shape_dtype_device(key, ndim, dtype):
    torch.manual_seed(0)
    m = make(key).train()
    x = sample_input(key, dtype, ndim=ndim)
    branch = make_branch(x.shape[1], ndim).to(dtype)
    y = call(m, x, branch)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("key", [k for k in KEYS if placement(k) == "input"])
@pytest.mark.parametrize("channels", [1, 3])
def test_input_level_methods_accept_grey_and_colour_images(key, channels):
    torch.manual_seed(0)
    x = torch.rand(4, channels, 32, 24) + 0.05
    y = make(key).train()(x)
    assert y.shape == x.shape and y.dtype == x.dtype


def _outputs(key: str, seed: int, calls: int = 30, ndim: int = 2) -> torch.Tensor:
    """Outputs of ``calls`` training passes after ``torch.manual_seed(seed)``."""
    m = make(key).train()
    x = sample_input(key, ndim=ndim)
    branch = make_branch(x.shape[1], ndim)
    torch.manual_seed(seed)
    with torch.no_grad():
        return torch.stack([call(m, x, branch) for _ in range(calls)])


@pytest.mark.parametrize("key,ndim", KEYS_NDIM, ids=NDIM_IDS)
def test_reproducible_under_a_fixed_seed(key, ndim):
    first, again, other = (_outputs(key, s, ndim=ndim) for s in (0, 0, 1))
    assert torch.equal(first, again), "same seed gave a different output"
    if key in DETERMINISTIC:
        assert torch.equal(first, other)
        m, x = make(key).train(), sample_input(key, ndim=ndim)
        state = torch.get_rng_state()
        call(m, x)
        assert torch.equal(torch.get_rng_state(), state), "a deterministic method drew random numbers"
    else:
        # 30 passes: a method that fires only in a fraction of the passes still differs
        assert not torch.equal(first, other), "output does not depend on torch's seed"


@pytest.mark.parametrize("key,ndim", KEYS_NDIM, ids=NDIM_IDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_works_under_autocast(key, ndim, dtype):
    torch.manual_seed(0)
    m = make(key).train()
    x = sample_input(key, dtype, ndim=ndim).requires_grad_()
    branch = make_branch(x.shape[1], ndim)
    with torch.autocast("cpu", dtype=dtype):
        y = call(m, x, branch)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y).all()
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    m.eval()
    with torch.autocast("cpu", dtype=dtype), torch.no_grad():
        y_eval = call(m, x.detach(), branch)
    if key not in EVAL_RULES:
        assert torch.equal(y_eval, x.detach())


@pytest.mark.parametrize("key,ndim", KEYS_NDIM, ids=NDIM_IDS)
def test_gradients_reach_the_input(key, ndim):
    torch.manual_seed(0)
    m = make(key).train()
    x = sample_input(key, ndim=ndim).requires_grad_()
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) + 0.5
    y = call(m, x)
    (y * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad != 0).any()


def _bad_values(key: str) -> list[tuple[str, object]]:
    cases = []
    for name, default in regularizers.parameters(key).items():
        if name in FRACTION_PARAMS:
            cases += [(name, -0.1), (name, 1.5)]
        elif name in COUNT_PARAMS:
            cases += [(name, 0), (name, -1)]
        elif name in NONNEGATIVE_PARAMS:
            cases.append((name, -1.0))
        elif isinstance(default, str):
            cases.append((name, "no-such-choice"))
    return cases


BAD = [(key, name, value) for key in KEYS for name, value in _bad_values(key)]


def test_every_key_with_a_strength_has_bad_value_cases():
    for key in KEYS:
        if regularizers.parameters(key):
            assert _bad_values(key), f"{key}: no parameter recognised as rate-, count- or choice-like"


@pytest.mark.parametrize("key,name,value", BAD, ids=[f"{k}-{n}={v}" for k, n, v in BAD])
def test_bad_parameters_rejected_at_construction(key, name, value):
    with pytest.raises(ConfigError) as info:
        regularizers.build(key, **{name: value})
    message = str(info.value)
    assert "\n" not in message
    assert key in message and name in message, message


@pytest.mark.parametrize("key", KEYS)
def test_unknown_parameter_lists_the_valid_ones(key):
    with pytest.raises(ConfigError) as info:
        regularizers.build(key, no_such_param=1)
    message = str(info.value)
    assert "no_such_param" in message and key in message
    for name in regularizers.parameters(key):
        assert name in message


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        regularizers.build("no_such_regularizer")
    message = str(info.value)
    assert "no_such_regularizer" in message
    for key in KEYS:
        assert key in message


@pytest.mark.parametrize("key", KEYS)
def test_repr_shows_every_parameter(key):
    text = repr(make(key))
    for name in regularizers.parameters(key):
        assert f"{name}=" in text, f"{key}: {name} missing from {text}"


@pytest.mark.parametrize("key", KEYS)
def test_placement_protocol(key):
    make_slot, input_module = regularizers.spec_to_factory({"name": key})
    slot = make_slot(*STAGE)
    if placement(key) == "input":
        assert type(input_module) is regularizers.get(key)
        x = torch.rand(2, 4, 8, 8)
        assert slot.train()(x) is x
    else:
        assert input_module is None
        assert type(slot) is regularizers.get(key)


@pytest.mark.parametrize("key", sorted(REFUSES_3D) or [pytest.param("none", marks=pytest.mark.skip(
    reason="every key extends to 3D"))])
def test_3d_refusal_names_the_method(key):
    with pytest.raises(ValueError, match=key):
        call(make(key).train(), sample_input(key, ndim=3))


@pytest.mark.parametrize("key", KEYS)
def test_3d_input_keeps_its_shape_in_train_mode(key):
    # every 3D-capable key really takes the 3D path: no flattening, no 2D fallback
    if key in REFUSES_3D:
        pytest.skip("refuses 3D")
    torch.manual_seed(0)
    x = sample_input(key, ndim=3)
    y = call(make(key).train(), x)
    assert y.shape == x.shape and y.dim() == 5
