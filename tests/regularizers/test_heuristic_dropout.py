"""Heuristic Dropout against a hand computation (spec: shared/spec/heuristic-dropout.md).

The expected values are computed independently of the module: numpy in float64,
explicit loops for the histogram/entropy and explicit 3×3 sums (cross-checked with
scipy.ndimage) for the Laplace mask.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

import medseg.regularizers._heuristic_fast as fast_module
from medseg.regularizers.heuristic import HeuristicDropout, channel_statistics

LAPLACE = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64)


# ----------------------------------------------------------------------------- reference
def ref_laplace(plane: np.ndarray) -> np.ndarray:
    """3×3 Laplace with zero padding by explicit neighbour sums."""
    h, w = plane.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.float64)
    padded[1:-1, 1:-1] = plane
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(h):
        for j in range(w):
            acc = 0.0
            for di in range(3):
                for dj in range(3):
                    acc += LAPLACE[di, dj] * padded[i + di, j + dj]
            out[i, j] = acc
    return out


def ref_entropy_variance(plane: np.ndarray, bins: int) -> tuple[float, float]:
    values = plane.astype(np.float64).ravel()
    levels = np.round(np.tanh(values) * bins)
    entropy = 0.0
    for level in range(-bins, bins + 1):
        count = int(np.sum(levels == level))
        if count:
            p = count / values.size
            entropy -= p * math.log(p)
    variance = float(np.var(values, ddof=1)) if values.size > 1 else 0.0
    return entropy, variance


def ref_heuristic(x: np.ndarray, rate: float, k: float, bins: int, mask: str, eps: float = 1e-7):
    """Return (output, selected channels per sample, scores) computed in float64."""
    B, C, H, W = x.shape
    n = int(round(rate * C))
    out = x.astype(np.float64).copy()
    scores = np.zeros((B, C))
    selected = []
    for b in range(B):
        for c in range(C):
            e, v = ref_entropy_variance(x[b, c], bins)
            scores[b, c] = e + k / (v + eps)
        order = sorted(range(C), key=lambda c: (-scores[b, c], c))
        chosen = sorted(order[:n])
        selected.append(chosen)
        for c in chosen:
            out[b, c] = ref_laplace(x[b, c]) if mask == "laplace" else 0.0
    return out, selected, scores


def assert_away_from_level_boundaries(x: torch.Tensor, bins: int, margin: float = 1e-5) -> None:
    # the hand computation is float64, the module float32: keep the data clear of
    # the quantisation boundaries so both must agree exactly on every level
    scaled = np.tanh(x.double().numpy()) * bins
    frac = np.abs(scaled - np.floor(scaled) - 0.5)
    assert frac.min() > margin


def changed_planes(x: torch.Tensor, y: torch.Tensor) -> list[list[int]]:
    diff = (x != y).flatten(2).any(dim=2)
    return [torch.nonzero(row).flatten().tolist() for row in diff]


# ----------------------------------------------------------------------------- hand example
SPARSE = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 100.0]]
RAMP = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
# Laplace of RAMP by hand: centre 8·5 − 40 = 0, corner (0,0) 8·1 − (2+4+5) = −3, ...
RAMP_LAPLACE = [[-3.0, -3.0, 11.0], [9.0, 0.0, 21.0], [39.0, 33.0, 53.0]]


def hand_input() -> torch.Tensor:
    # sample 0: (SPARSE, RAMP); sample 1: (RAMP, SPARSE) — the drop must follow the channel
    return torch.tensor([[SPARSE, RAMP], [RAMP, SPARSE]])


def test_hand_example_statistics():
    entropy, variance = channel_statistics(hand_input(), bins=10)
    # both planes: one pixel at one level, eight at another (tanh(1)·10 = 7.6 → 8,
    # tanh(2..9)·10 → 10; SPARSE: 0 → 0, tanh(100)·10 → 10)
    e = -(1 / 9 * math.log(1 / 9) + 8 / 9 * math.log(8 / 9))
    torch.testing.assert_close(entropy, torch.full((2, 2), e, dtype=torch.float64), rtol=0, atol=1e-12)
    v_sparse = 10000.0 / 9.0  # (Σx² − 9·mean²) / 8 = (10000 − 10000/9) / 8
    v_ramp = 7.5              # variance of 1..9
    expected_v = torch.tensor([[v_sparse, v_ramp], [v_ramp, v_sparse]])
    torch.testing.assert_close(variance, expected_v, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_hand_example_output(mask):
    x = hand_input()
    reg = HeuristicDropout(rate=0.5, k=2.0, mask=mask)  # n = round(0.5·2) = 1
    # scores: equal entropies, k/v larger for RAMP (2/7.5 vs 2/1111.1) → RAMP is dropped
    assert reg.select(x).tolist() == [[1], [0]]
    y = reg(x)
    dropped = torch.tensor(RAMP_LAPLACE) if mask == "laplace" else torch.zeros(3, 3)
    expected = torch.stack([torch.stack([x[0, 0], dropped]), torch.stack([dropped, x[1, 1]])])
    assert torch.equal(y, expected)


def test_reference_laplace_agrees_with_scipy():
    plane = np.random.default_rng(0).normal(size=(5, 7))
    np.testing.assert_allclose(ref_laplace(plane),
                               ndimage.correlate(plane, LAPLACE, mode="constant", cval=0.0),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref_laplace(np.array(RAMP)), np.array(RAMP_LAPLACE), atol=0)


# ----------------------------------------------------------------------------- random vs reference
@pytest.mark.parametrize("mask", ["laplace", "zero"])
@pytest.mark.parametrize("bins,k,rate", [(10, 2.0, 0.1), (10, 3.0, 0.3), (4, 0.0, 0.5), (1, 0.5, 0.25)])
def test_matches_numpy_reference(mask, bins, k, rate):
    g = torch.Generator().manual_seed(1234 + bins)
    B, C, H, W = 3, 12, 6, 7
    # mixed signs and channel-wise different spreads so scores differ per sample
    scale = torch.rand(B, C, 1, 1, generator=g) * 2.5 + 0.05
    shift = torch.randn(B, C, 1, 1, generator=g)
    x = torch.randn(B, C, H, W, generator=g) * scale + shift
    assert_away_from_level_boundaries(x, bins)
    reg = HeuristicDropout(rate=rate, k=k, bins=bins, mask=mask)
    expected, selected, scores = ref_heuristic(x.numpy(), rate, k, bins, mask)

    np.testing.assert_allclose(reg.scores(x).numpy(), scores, rtol=1e-5, atol=1e-9)
    assert [sorted(row) for row in reg.select(x).tolist()] == selected
    y = reg(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    # kept channels are bit-identical, no rescaling
    for b in range(B):
        for c in range(C):
            if c not in selected[b]:
                assert torch.equal(y[b, c], x[b, c])


def test_negative_inputs_use_all_levels():
    a = math.atanh(0.5)  # tanh(±a)·10 = ±5
    plane = torch.tensor([[a, -a], [a, -a]])
    x = torch.stack([plane, torch.full((2, 2), a)]).unsqueeze(0)  # (1, 2, 2, 2)
    entropy, _ = channel_statistics(x, bins=10)
    # levels −5 and +5, half each → ln 2 (clipping negatives to level 0 would also give
    # ln 2, so check the levels themselves through a 3-level plane as well)
    assert entropy[0, 0].item() == pytest.approx(math.log(2), abs=1e-12)
    assert entropy[0, 1].item() == pytest.approx(0.0, abs=1e-12)
    three = torch.tensor([[[[-a, -a], [0.0, a]]]])  # levels −5, −5, 0, 5
    e3, _ = channel_statistics(three, bins=10)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert e3.item() == pytest.approx(expected, abs=1e-12)
    # saturation: very negative values sit at level −bins, distinct from 0 and +bins
    sat = torch.tensor([[[[-50.0, 0.0], [50.0, 50.0]]]])
    e_sat, _ = channel_statistics(sat, bins=10)
    assert e_sat.item() == pytest.approx(-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)), abs=1e-12)


# ----------------------------------------------------------------------------- behaviour
def test_per_sample_independence():
    g = torch.Generator().manual_seed(7)
    C = 8
    base = torch.rand(C, 5, 5, generator=g) + 0.1
    # sample 1 is sample 0 with its channels permuted: the drop must follow the content
    perm = torch.randperm(C, generator=g)
    x = torch.stack([base, base[perm]])
    reg = HeuristicDropout(rate=0.25, mask="zero")
    chosen = reg.select(x)
    assert sorted(perm[chosen[1]].tolist()) == sorted(chosen[0].tolist())
    assert sorted(chosen[0].tolist()) != sorted(chosen[1].tolist())
    y = reg(x)
    assert changed_planes(x, y) == [sorted(chosen[0].tolist()), sorted(chosen[1].tolist())]


@pytest.mark.parametrize("rate,C,n", [(0.1, 64, 6), (0.1, 16, 2), (0.1, 32, 3), (0.1, 128, 13),
                                      (0.5, 4, 2), (0.25, 10, 2), (0.3, 10, 3), (0.0, 8, 0),
                                      (0.1, 4, 0)])
def test_exactly_round_rate_c_channels_replaced(rate, C, n):
    g = torch.Generator().manual_seed(C)
    x = torch.rand(3, C, 4, 4, generator=g) + 0.5  # strictly positive: zeroing changes a plane
    for mask in ("zero", "laplace"):
        reg = HeuristicDropout(rate=rate, mask=mask)
        assert reg.num_dropped(C) == n
        y = reg(x)
        assert [len(row) for row in changed_planes(x, y)] == [n, n, n]


def test_eval_mode_is_identity():
    x = torch.randn(2, 10, 6, 6)
    reg = HeuristicDropout(rate=0.3).eval()
    y = reg(x)
    assert y is x


def test_no_randomness_and_deterministic():
    x = torch.randn(4, 16, 8, 8)
    reg = HeuristicDropout(rate=0.2)
    state = torch.get_rng_state()
    y1, y2 = reg(x), reg(x.clone())
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(y1, y2)


def test_ties_go_to_lower_channel_index():
    x = torch.zeros(2, 10, 4, 4)  # every channel scores k / eps
    reg = HeuristicDropout(rate=0.3)
    assert reg.select(x).tolist() == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("chunk", [1, 40, 100])
def test_chunked_statistics_match_single_pass(monkeypatch, chunk):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 5, 4, generator=g) * 2
    e_ref, v_ref = channel_statistics(x, bins=10)
    monkeypatch.setattr(fast_module, "_CHUNK_ELEMENTS", chunk)  # 1, 2 and 5 planes per chunk
    e, v = channel_statistics(x, bins=10)
    assert torch.equal(e, e_ref)
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=0)


def test_single_pixel_planes():
    x = torch.tensor([[[[1.0]], [[-2.0]], [[0.5]], [[3.0]]]])
    reg = HeuristicDropout(rate=0.5)
    entropy, variance = channel_statistics(x)
    assert torch.equal(variance, torch.zeros(1, 4))
    assert torch.equal(entropy, torch.zeros(1, 4, dtype=torch.float64))
    y = reg(x)  # all tie → channels 0, 1; the Laplace of one pixel is 8·x
    assert torch.equal(y.flatten(), torch.tensor([8.0, -16.0, 0.5, 3.0]))


def test_channels_last_input():
    x = torch.randn(2, 10, 6, 5)
    reg = HeuristicDropout(rate=0.2)
    y = reg(x.to(memory_format=torch.channels_last))
    assert torch.equal(y, reg(x))


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_gradient_identity_on_kept_and_laplace_adjoint_on_dropped(mask):
    g = torch.Generator().manual_seed(11)
    x = (torch.randn(2, 10, 6, 7, generator=g) * 1.5).requires_grad_()
    w = torch.randn(2, 10, 6, 7, generator=g)
    reg = HeuristicDropout(rate=0.3, mask=mask)
    (reg(x) * w).sum().backward()
    chosen = reg.select(x.detach()).tolist()
    assert x.grad is not None
    for b in range(2):
        for c in range(10):
            if c in chosen[b]:
                if mask == "zero":
                    expected = torch.zeros(6, 7)
                else:
                    # adjoint of the zero-padded correlation with K is the correlation
                    # with the flipped K (= K: the Laplace kernel is symmetric)
                    expected = torch.from_numpy(
                        ndimage.correlate(w[b, c].double().numpy(), LAPLACE[::-1, ::-1],
                                          mode="constant", cval=0.0)).float()
                torch.testing.assert_close(x.grad[b, c], expected, rtol=1e-5, atol=1e-5)
            else:
                assert torch.equal(x.grad[b, c], w[b, c])


def test_gradient_matches_autograd_of_direct_formulation():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 8, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(3, 8, 5, 5, generator=g, dtype=torch.float64)
    reg = HeuristicDropout(rate=0.25)
    chosen = reg.select(x)
    drop = torch.zeros(3, 8, dtype=torch.bool)
    drop[torch.arange(3).unsqueeze(1), chosen] = True

    xa = x.clone().requires_grad_()
    kernel = torch.tensor(LAPLACE).view(1, 1, 3, 3).repeat(8, 1, 1, 1)
    lap = torch.nn.functional.conv2d(xa, kernel, padding=1, groups=8)
    direct = torch.where(drop[:, :, None, None], lap, xa)
    (direct * w).sum().backward()

    xb = x.clone().requires_grad_()
    y = reg(xb)
    (y * w).sum().backward()
    torch.testing.assert_close(y, direct.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)


def test_selection_carries_no_gradient():
    # Only the planes' values are differentiated: the output is linear in x for a fixed
    # selection, so the gradient of sum(y) does not depend on the scores.
    x = torch.rand(1, 4, 5, 5).requires_grad_()
    reg = HeuristicDropout(rate=0.25)
    assert not reg.scores(x).requires_grad
    reg(x).sum().backward()
    chosen = reg.select(x.detach())[0].item()
    ones = np.ones((5, 5))
    expected = ndimage.correlate(ones, LAPLACE, mode="constant", cval=0.0)
    torch.testing.assert_close(x.grad[0, chosen].double(), torch.from_numpy(expected))


# ----------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_low_precision(dtype):
    g = torch.Generator().manual_seed(2)
    conv = torch.nn.Conv2d(3, 10, 3, padding=1)
    inp = torch.randn(2, 3, 8, 8, generator=g)
    reg = HeuristicDropout(rate=0.3)
    with torch.autocast("cpu", dtype=dtype):
        h = conv(inp)
        assert h.dtype == dtype
        y = reg(h)
        loss = y.float().square().sum()
    assert y.dtype == dtype and y.shape == h.shape
    loss.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    # statistics are computed in float32 from the low-precision values: the selection
    # and output equal the float32 computation on the same values, cast back
    ref = HeuristicDropout(rate=0.3)
    hf = h.detach().float()
    assert torch.equal(reg.select(h.detach()), ref.select(hf))
    torch.testing.assert_close(y.detach(), ref(hf).to(dtype), rtol=0, atol=0)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("params,match", [
    ({"rate": -0.1}, "rate"), ({"rate": 1.0}, "rate"), ({"rate": 1.5}, "rate"),
    ({"k": -1.0}, "k must"), ({"k": float("inf")}, "k must"),
    ({"bins": 0}, "bins"), ({"bins": 2.5}, "bins"),
    ({"mask": "gauss"}, "mask"), ({"eps": 0.0}, "eps"), ({"rate": "0.1"}, "rate"),
])
def test_bad_parameters_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        HeuristicDropout(**params)


def test_registry_turns_bad_parameters_into_config_error():
    from medseg import regularizers
    from medseg.errors import ConfigError

    assert isinstance(regularizers.build("heuristic", rate=0.2, k=3.0), HeuristicDropout)
    with pytest.raises(ConfigError, match="heuristic.*rate"):
        regularizers.build("heuristic", rate=1.0)
    with pytest.raises(ConfigError, match="mask"):
        regularizers.build("heuristic", mask="gaussian")


def test_extra_repr_and_defaults():
    reg = HeuristicDropout()
    assert (reg.rate, reg.k, reg.bins, reg.mask, reg.eps) == (0.1, 2.0, 10, "laplace", 1e-7)
    text = repr(HeuristicDropout(rate=0.2, k=3.0, bins=8, mask="zero"))
    for part in ("rate=0.2", "k=3.0", "bins=8", "mask='zero'", "eps=1e-07"):
        assert part in text
    assert HeuristicDropout.placement == "slot" and HeuristicDropout.key == "heuristic"


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match="B, C, H, W"):
        HeuristicDropout()(torch.randn(2, 3, 4))


def test_nan_input_does_not_crash():
    x = torch.rand(1, 4, 3, 3)
    x[0, 2, 1, 1] = float("nan")
    y = HeuristicDropout(rate=0.25)(x)
    assert y.shape == x.shape


def test_nan_single_pixel_does_not_crash():
    x = torch.tensor([[[[float("nan")]], [[1.0]]]])
    y = HeuristicDropout(rate=0.5)(x)
    assert y.shape == x.shape


# ----------------------------------------------------------------------------- the package's reference
@pytest.mark.parametrize("mask", ["laplace", "zero"])
@pytest.mark.parametrize("bins,k,rate", [(10, 2.0, 0.1), (4, 0.0, 0.5), (1, 0.5, 0.25)])
def test_package_reference_matches_the_hand_computation(mask, bins, k, rate):
    from medseg.regularizers import heuristic_dropout_reference

    g = torch.Generator().manual_seed(99 + bins)
    x = torch.randn(2, 10, 5, 6, generator=g, dtype=torch.float64) * 1.5
    assert_away_from_level_boundaries(x, bins)
    expected, _, _ = ref_heuristic(x.numpy(), rate, k, bins, mask)
    got = heuristic_dropout_reference(x, rate=rate, k=k, bins=bins, mask=mask)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
