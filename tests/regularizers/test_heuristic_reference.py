"""The optimised Heuristic Dropout against its definition, ``heuristic_dropout_reference``,
in 2D and 3D; the reference itself against independent computations (scipy's
``ndimage.correlate`` for the 3D Laplace, hand-built inputs for ``skip_constant``).
The 2D reference is also checked against the numpy hand computation of
``test_heuristic_dropout.py`` there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg import regularizers
from medseg.regularizers import HeuristicDropout, heuristic_dropout, heuristic_dropout_reference
from medseg.regularizers.heuristic import channel_statistics, laplace_reference

SHAPES = {2: (3, 12, 6, 7), 3: (2, 12, 4, 5, 6)}


def away_from_level_boundaries(x: torch.Tensor, bins: int, margin: float = 1e-5) -> bool:
    scaled = np.tanh(x.double().numpy()) * bins
    return bool(np.abs(scaled - np.floor(scaled) - 0.5).min() > margin)


def mixed_input(ndim: int, bins: int, seed: int, dtype=torch.float32, dead=()) -> torch.Tensor:
    """Mixed signs, channel-wise different spreads; channels ``dead`` all zero."""
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[ndim]
    lead = shape[:2] + (1,) * ndim
    x = torch.randn(shape, generator=g) * (torch.rand(lead, generator=g) * 2.5 + 0.05) \
        + torch.randn(lead, generator=g)
    for b, c in dead:
        x[b, c] = 0.0
    assert away_from_level_boundaries(x[x != 0], bins)
    return x.to(dtype)


def changed(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x != y).flatten(2).any(dim=2)


PARAMS = [(10, 2.0, 0.1), (10, 3.0, 0.3), (4, 0.0, 0.5), (1, 0.5, 0.25)]


# ----------------------------------------------------------------------------- fast vs reference
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("mask", ["laplace", "zero"])
@pytest.mark.parametrize("bins,k,rate", PARAMS)
@pytest.mark.parametrize("skip_constant", [False, True])
def test_fast_path_equals_the_reference(ndim, mask, bins, k, rate, skip_constant):
    x = mixed_input(ndim, bins, seed=bins + 7 * ndim, dead=[(0, 3), (0, 5), (1, 0)])
    params = dict(rate=rate, k=k, bins=bins, mask=mask, skip_constant=skip_constant)
    expected = heuristic_dropout_reference(x, **params)
    y = heuristic_dropout(x, **params)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(changed(x, y), changed(x, expected))  # the same channels replaced
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    kept = ~changed(x, y)
    assert torch.equal(y[kept], x[kept])  # kept channels bit-identical, no rescaling
    module = HeuristicDropout(**params)
    assert torch.equal(module(x), y)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_float64_values_and_gradients_equal_the_reference(ndim, mask):
    x = mixed_input(ndim, 10, seed=3 + ndim, dtype=torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = heuristic_dropout(xa, rate=0.25, mask=mask)
    yb = heuristic_dropout_reference(xb, rate=0.25, mask=mask)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 4, 3, 4), (1, 4, 3, 3, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_gradcheck_float64(shape, mask):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = (x * torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64).view(1, 4, *[1] * (x.dim() - 2)))
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: heuristic_dropout(t, rate=0.5, mask=mask), (x,))
    # the reference: random projections of the Jacobian (fast_mode), the full one is slow in 3D
    assert torch.autograd.gradcheck(lambda t: heuristic_dropout_reference(t, rate=0.5, mask=mask), (x,),
                                    fast_mode=True)


def test_fused_relu_path_in_3d_equals_relu_then_module():
    fused, plain = HeuristicDropout(rate=0.3), HeuristicDropout(rate=0.3)
    fused.fuse_relu()
    pre = torch.randn(2, 10, 4, 5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a, b = pre.clone().requires_grad_(), pre.clone().requires_grad_()
    ya, yb = fused(a * 1), plain(torch.relu(b))
    assert torch.equal(ya, yb)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert torch.equal(a.grad, b.grad)


# ----------------------------------------------------------------------------- the reference itself
def test_reference_laplace_3d_agrees_with_scipy():
    vol = np.random.default_rng(0).normal(size=(4, 5, 6))
    kernel = -np.ones((3, 3, 3))
    kernel[1, 1, 1] = 26.0
    expected = ndimage.correlate(vol, kernel, mode="constant", cval=0.0)
    got = laplace_reference(torch.from_numpy(vol)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # an impulse: 26 at the centre, −1 at the 26 neighbours, 0 elsewhere
    impulse = torch.zeros(1, 1, 5, 5, 5, dtype=torch.float64)
    impulse[0, 0, 2, 2, 2] = 1.0
    out = laplace_reference(impulse)[0, 0]
    assert out[2, 2, 2] == 26.0 and out[1:4, 1:4, 1:4].sum() == 0.0 and out.abs().sum() == 52.0


def test_statistics_over_all_voxels_in_3d():
    # one channel: 27 voxels, one of them 100 → levels 0 (26×) and 10 (1×)
    x = torch.zeros(1, 1, 3, 3, 3)
    x[0, 0, 2, 2, 2] = 100.0
    entropy, variance = channel_statistics(x, bins=10)
    p = np.array([26, 1]) / 27
    assert entropy.item() == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-12)
    assert variance.item() == pytest.approx(float(np.var([0.0] * 26 + [100.0], ddof=1)), rel=1e-6)


def test_skip_constant_never_drops_a_constant_channel():
    x = torch.rand(2, 10, 5, 5) + 0.5
    x[0, [1, 4, 7]] = 0.0       # dead after a ReLU
    x[1, 2] = 3.0               # constant, non-zero
    paper = heuristic_dropout(x, rate=0.3)
    ablation = heuristic_dropout(x, rate=0.3, skip_constant=True)
    # the paper's method spends its whole budget (3) on the constant channels first
    dropped_paper = HeuristicDropout(rate=0.3).select(x).tolist()
    assert sorted(dropped_paper[0]) == [1, 4, 7] and 2 in dropped_paper[1]
    assert torch.equal(paper[0], x[0])  # dropping dead channels changes nothing
    chosen = changed(x, ablation)
    assert chosen.sum(dim=1).tolist() == [3, 3]
    assert not chosen[0, [1, 4, 7]].any() and not chosen[1, 2]


def test_skip_constant_drops_fewer_when_too_few_live_channels():
    x = torch.zeros(1, 4, 3, 3)
    x[0, 2] = torch.arange(9.0).view(3, 3)
    y = heuristic_dropout(x, rate=0.5, mask="zero", skip_constant=True)  # budget 2, one live
    assert changed(x, y).tolist() == [[False, False, True, False]]
    ref = heuristic_dropout_reference(x, rate=0.5, mask="zero", skip_constant=True)
    assert torch.equal(y, ref)


# ----------------------------------------------------------------------------- API
def test_functional_form_and_module_agree_and_eval_is_identity():
    x = mixed_input(3, 10, seed=1)
    assert heuristic_dropout(x, training=False) is x
    assert HeuristicDropout().eval()(x) is x
    assert torch.equal(heuristic_dropout(x, rate=0.2, k=3.0), HeuristicDropout(rate=0.2, k=3.0)(x))


@pytest.mark.parametrize("params,match", [({"rate": 1.0}, "rate"), ({"k": -1}, "k must"),
                                          ({"bins": 0}, "bins"), ({"mask": "x"}, "mask"),
                                          ({"eps": 0}, "eps"), ({"skip_constant": 1}, "skip_constant")])
def test_functional_form_rejects_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        heuristic_dropout(torch.rand(1, 4, 3, 3), **params)


def test_rejects_other_ranks_naming_the_method():
    with pytest.raises(ValueError, match="HeuristicDropout"):
        heuristic_dropout(torch.rand(2, 4, 3))
    with pytest.raises(ValueError, match="HeuristicDropout"):
        HeuristicDropout()(torch.rand(1, 2, 2, 2, 2, 2))


def test_skip_constant_is_a_registry_parameter():
    assert regularizers.parameters("heuristic")["skip_constant"] is False
    assert regularizers.build("heuristic", skip_constant=True).skip_constant is True
    with pytest.raises(Exception, match="skip_constant"):
        regularizers.build("heuristic", skip_constant="yes")


def test_every_regularizer_class_is_importable_from_the_package():
    for key in regularizers.available():
        cls = regularizers.get(key)
        assert getattr(regularizers, cls.__name__) is cls, key
        assert cls.__name__ in regularizers.__all__
