"""Method-specific behaviour of the dropout-family regularizers.

Keys: dropout, spatial_dropout, gaussian_dropout, uout, dropblock, stochastic_depth,
structural_dropout, cutout, input_dropout. (The generic contract — eval identity,
seeding, autocast, parameter errors — is in ``test_regularizer_contract.py``.)

Statistical tolerances are derived from the number of independent draws: a mean of
``n`` i.i.d. draws with variance ``v`` is accepted within ``Z·sqrt(v/n)`` of its
expectation, ``Z = 6`` (a false failure has probability ≈ 2e-9 per check under the
normal approximation, ≤ 1/36 by Chebyshev whatever the distribution; the seeds are
fixed, so the tests are deterministic).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.regularizers.dropblock import DropBlock, seed_rate
from medseg.regularizers.dropout import Dropout, GaussianDropout, SpatialDropout, Uout
from medseg.regularizers.input_level import Cutout, InputDropout
from medseg.regularizers.stochastic_depth import StochasticDepth, survival_probability
from medseg.regularizers.structural_dropout import StructuralDropout

Z = 6.0


def tol(variance: float, n: int) -> float:
    """Accepted deviation of a mean of ``n`` i.i.d. draws with the given variance."""
    return Z * math.sqrt(variance / n)


def ones(*shape, grad=False):
    x = torch.ones(*shape)
    return x.requires_grad_() if grad else x


# --------------------------------------------------------------------- Dropout


@pytest.mark.parametrize("cls,p", [(Dropout, 0.1), (Dropout, 0.5), (InputDropout, 0.3)])
def test_unit_dropout_fraction_scale_and_gradient(cls, p):
    torch.manual_seed(0)
    m = cls(p=p).train()
    x = ones(16, 8, 32, 32, grad=True)  # n = 131072 Bernoulli draws
    y = m(x)
    dropped = y == 0
    n = y.numel()
    assert abs(dropped.float().mean().item() - p) <= tol(p * (1 - p), n)
    scale = 1.0 / (1.0 - p)
    assert torch.allclose(y[~dropped], torch.full_like(y[~dropped], scale), rtol=1e-6, atol=0)
    y.backward(torch.ones_like(y))
    # gradient: exactly 0 where dropped, exactly the applied scale where kept
    assert torch.equal(x.grad, y.detach())
    assert (x.grad[dropped] == 0).all()


def test_input_dropout_default_and_placement():
    m = InputDropout()
    assert m.p == 0.3 and m.placement == "input"
    assert Dropout().p == 0.1 and Dropout.placement == "slot"


def _expectation_tol(x: torch.Tensor, multiplier_variance: float) -> float:
    """Tolerance for mean(y) vs mean(x) when y = x·ε with i.i.d. E[ε]=1, Var[ε]=v:
    Var(mean y) = v·Σx² / n²."""
    n = x.numel()
    return Z * math.sqrt(multiplier_variance * (x.double() ** 2).sum().item()) / n


@pytest.mark.parametrize("module,variance", [
    (Dropout(0.1), 0.1 / 0.9),
    (GaussianDropout(0.1), 0.1 / 0.9),
    (Uout(0.1), 0.1**2 / 3),
    (Uout(0.5), 0.5**2 / 3),
], ids=["dropout", "gaussian", "uout0.1", "uout0.5"])
def test_expectation_preserved_unitwise(module, variance):
    torch.manual_seed(1)
    x = torch.rand(8, 16, 32, 32) * 3 + 0.5
    y = module.train()(x)
    assert abs(y.double().mean().item() - x.double().mean().item()) <= _expectation_tol(x, variance)


def test_spatial_dropout_drops_whole_channels_per_sample():
    torch.manual_seed(2)
    p = 0.1
    x = ones(256, 64, 4, 4, grad=True)  # 16384 (sample, channel) draws
    y = SpatialDropout(p).train()(x)
    planes_max, planes_min = y.amax(dim=(2, 3)), y.amin(dim=(2, 3))
    assert torch.equal(planes_max, planes_min)  # every plane is all-dropped or all-kept
    dropped = planes_max == 0
    assert abs(dropped.float().mean().item() - p) <= tol(p * (1 - p), dropped.numel())
    # independent per sample: the channel masks are not shared across the batch
    assert not (dropped == dropped[:1]).all()
    kept = y.detach()[~dropped]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-6, atol=0)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, y.detach())


def test_spatial_dropout_expectation():
    torch.manual_seed(3)
    p = 0.1
    x = torch.rand(64, 32, 8, 8) + 0.5
    y = SpatialDropout(p).train()(x)
    plane_sums = x.double().sum(dim=(2, 3))
    tolerance = Z * math.sqrt(p / (1 - p) * (plane_sums**2).sum().item()) / x.numel()
    assert abs(y.double().mean().item() - x.double().mean().item()) <= tolerance


def test_gaussian_dropout_noise_distribution_and_gradient():
    torch.manual_seed(4)
    p = 0.2
    var = p / (1 - p)
    x = ones(8, 16, 32, 32, grad=True)
    y = GaussianDropout(p).train()(x)
    eps = y.detach().double().flatten()
    n = eps.numel()
    assert abs(eps.mean().item() - 1.0) <= tol(var, n)
    # Var of the sample variance of a normal: 2σ⁴/(n−1)
    assert abs(eps.var().item() - var) <= Z * math.sqrt(2 * var**2 / (n - 1))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, y.detach())  # d(x·ε)/dx = ε


def test_uout_noise_is_uniform_in_band():
    torch.manual_seed(5)
    beta = 0.3
    x = torch.rand(8, 16, 32, 32) + 0.5
    x.requires_grad_()
    y = Uout(beta).train()(x)
    r = (y.detach().double() / x.detach().double() - 1).flatten()
    assert r.min().item() >= -beta - 1e-6 and r.max().item() <= beta + 1e-6
    n = r.numel()
    assert abs(r.mean().item()) <= tol(beta**2 / 3, n)
    # Var of the sample variance for U(−β, β): (μ4 − σ⁴)/n = (β⁴/5 − β⁴/9)/n
    assert abs(r.var().item() - beta**2 / 3) <= tol(beta**4 / 5 - beta**4 / 9, n)
    y.backward(torch.ones_like(y))
    assert torch.allclose(x.grad.double(), 1 + r.view_as(x), rtol=0, atol=1e-6)


# ------------------------------------------------------------------- DropBlock


def dropblock_expectation(p: float, bs: int, H: int, W: int):
    """(γ, exact expected drop fraction, pairwise-overlap bound, per-map variance bound).

    A unit covered by ``n`` valid block positions is dropped with probability
    ``1 − (1 − γ)^n``; by Bonferroni ``nγ − C(n,2)γ² ≤ 1 − (1 − γ)^n ≤ nγ`` and the
    map mean of ``nγ`` is exactly ``p``. A map's drop fraction changes by at most
    ``bs²/HW`` when one of its ``N`` seeds flips, so by Efron–Stein
    ``Var ≤ N·γ(1 − γ)·(bs²/HW)²``.
    """
    gamma = seed_rate(p, bs, H, W)

    def cover(length):
        i = torch.arange(length, dtype=torch.float64)
        return torch.clamp(i, max=length - bs) - torch.clamp(i - bs + 1, min=0) + 1

    n = cover(H)[:, None] * cover(W)[None, :]
    exact = (1 - (1 - gamma) ** n).mean().item()
    overlap = (gamma**2 * n * (n - 1) / 2).mean().item()
    valid = (H - bs + 1) * (W - bs + 1)
    var_bound = valid * gamma * (1 - gamma) * (bs**2 / (H * W)) ** 2
    return gamma, exact, overlap, var_bound


def test_dropblock_gamma_formula():
    # γ = p/bs² · HW/((H−bs+1)(W−bs+1))
    assert seed_rate(0.1, 5, 32, 32) == pytest.approx(0.1 / 25 * 1024 / 784)
    assert seed_rate(0.1, 5, 24, 40) == pytest.approx(0.1 / 25 * 960 / (20 * 36))


@pytest.mark.parametrize("H,W", [(32, 32), (24, 40)])
def test_dropblock_drop_fraction(H, W):
    torch.manual_seed(6)
    p, bs = 0.1, 5
    m = DropBlock(p, bs).train()
    gamma, exact, overlap, var_bound = dropblock_expectation(p, bs, H, W)
    # the realised rate is below p only by the overlap of blocks
    assert p - overlap <= exact <= p
    fractions = []
    for _ in range(4):
        y = m(ones(16, 32, H, W))
        fractions.append((y == 0).double().mean().item())
    maps = 4 * 16 * 32
    measured = sum(fractions) / len(fractions)
    assert abs(measured - exact) <= tol(var_bound, maps)
    # and hence ≈ p within the statistical tolerance plus the (justified) overlap term
    assert abs(measured - p) <= tol(var_bound, maps) + overlap


@pytest.mark.parametrize("bs,H,W", [(5, 24, 40), (3, 16, 16), (4, 20, 20)])
def test_dropblock_drops_contiguous_blocks(bs, H, W):
    torch.manual_seed(7)
    x = ones(4, 8, H, W, grad=True)
    y = DropBlock(0.2, bs).train()(x)
    d = (y == 0).double().detach()
    assert d.sum() > 0
    # morphological opening with a bs×bs square: every dropped unit lies in a fully
    # dropped bs×bs square inside the map, so opening(d) == d
    fully = 1 - F.max_pool2d(1 - d, bs, stride=1)  # top-left corners of dropped squares
    opened = F.max_pool2d(F.pad(fully, (bs - 1,) * 4), bs, stride=1)
    assert torch.equal(opened, d)
    # rescaled by numel / kept, exactly preserving the mean of a constant input
    kept = (~(y == 0)).sum().item()
    scale = y.numel() / kept
    assert torch.allclose(y.detach()[y != 0], torch.full((kept,), scale), rtol=1e-6, atol=0)
    assert y.detach().double().mean().item() == pytest.approx(1.0, abs=1e-6)
    # gradient: exactly 0 in the blocks, exactly the scale elsewhere
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, y.detach())


def test_dropblock_block_size_clipped_to_feature_size():
    torch.manual_seed(8)
    p = 0.1
    # 3×3 maps, block 5 → bs = 3: γ = p and a seed drops the whole map
    y = DropBlock(p, 5).train()(ones(512, 4, 3, 3))
    planes = y.amax(dim=(2, 3))
    assert torch.equal(planes, y.amin(dim=(2, 3)))
    dropped = planes == 0
    assert abs(dropped.double().mean().item() - p) <= tol(p * (1 - p), dropped.numel())


# ------------------------------------------------------------ Stochastic Depth


def test_stochastic_depth_survival_schedule():
    m = StochasticDepth(p_last=0.5)
    assert m.placement == "residual"
    assert m.survival == 0.5  # unconfigured: a single stage
    total = 5
    got = []
    for i in range(total):
        m.configure_stage(i, total)
        got.append(m.survival)
        assert m.survival == pytest.approx(1 - (i + 1) / total * 0.5)
    assert got == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert survival_probability(total - 1, total, 0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="index"):
        m.configure_stage(5, 5)


@pytest.mark.parametrize("index", [0, 2, 4])
def test_stochastic_depth_per_sample_gate(index):
    torch.manual_seed(9)
    m = StochasticDepth(p_last=0.5).train()
    m.configure_stage(index, 5)
    p_l = m.survival
    h = ones(4096, 2, 2, 2, grad=True)
    y = m(h, lambda t: 2 * t)  # y = h + b·2h ∈ {1, 3} per sample
    per_sample = y.detach().flatten(1)
    assert torch.equal(per_sample.amax(1), per_sample.amin(1))  # one gate per sample
    alive = per_sample[:, 0] == 3
    assert ((per_sample[:, 0] == 1) | alive).all()
    assert abs(alive.double().mean().item() - p_l) <= tol(p_l * (1 - p_l), alive.numel())
    # gradient 1 + 2b: the branch gets no gradient where it was skipped
    y.backward(torch.ones_like(y))
    assert torch.equal(h.grad, y.detach())


def test_stochastic_depth_eval_rule_and_batch_mode():
    torch.manual_seed(10)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    m = StochasticDepth(p_last=0.5)
    m.configure_stage(1, 4)  # p_l = 1 − 2/4·0.5 = 0.75
    h = torch.randn(3, 4, 8, 8)
    m.eval()
    state = torch.get_rng_state()
    with torch.no_grad():
        y = m(h, conv)
        expected = h + 0.75 * conv(h)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(y, expected, rtol=0, atol=1e-6)
    # batch mode: one gate for the whole mini-batch
    mb = StochasticDepth(p_last=0.5, mode="batch").train()
    outcomes = set()
    for _ in range(20):
        out = mb(torch.ones(8, 1, 2, 2), lambda t: 2 * t)
        assert torch.equal(out.amax(), out.amin())
        outcomes.add(out[0, 0, 0, 0].item())
    assert outcomes == {1.0, 3.0}
    # p_last = 1: the plain residual block, no random numbers
    m1 = StochasticDepth(p_last=1.0).train()
    state = torch.get_rng_state()
    assert torch.equal(m1(h, lambda t: 2 * t), 3 * h)
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------- Structural Dropout


def test_structural_dropout_zeroes_a_suffix_of_channels():
    torch.manual_seed(11)
    C = 8
    m = StructuralDropout(p=1.0).train()  # always cut
    cuts = []
    for _ in range(1200):
        x = ones(3, C, 2, 2, grad=True)
        y = m(x)
        ch = y.detach()[:, :, 0, 0]
        assert torch.equal(ch, ch[:1].expand_as(ch))  # one cut for the whole batch
        assert torch.equal(y.detach().amax(dim=(2, 3)), y.detach().amin(dim=(2, 3)))
        kept = ch[0] != 0
        c = int(kept.sum())
        assert 1 <= c <= C - 1
        assert kept[:c].all() and not kept[c:].any()  # a prefix kept, the suffix zeroed
        assert torch.allclose(ch[0, :c], torch.full((c,), C / c), rtol=1e-6, atol=0)
        # the channel mean is preserved exactly for equal channels
        assert torch.allclose(y.detach().mean(dim=1), x.detach().mean(dim=1), rtol=1e-6)
        y.backward(torch.ones_like(y))
        assert torch.equal(x.grad, y.detach())
        cuts.append(c)
    cuts_t = torch.tensor(cuts, dtype=torch.float64)
    # c ~ uniform{1, …, C−1}: mean C/2, variance ((C−1)² − 1)/12; every value occurs
    assert abs(cuts_t.mean().item() - C / 2) <= tol(((C - 1) ** 2 - 1) / 12, len(cuts))
    assert set(cuts) == set(range(1, C))


def test_structural_dropout_cut_probability_and_drop_fraction():
    torch.manual_seed(12)
    p, C, n = 0.1, 16, 4000
    m = StructuralDropout(p=p).train()
    cut_passes, fractions = 0, []
    for _ in range(n):
        y = m(torch.ones(1, C, 1, 1))
        dropped = (y == 0).double().mean().item()
        cut_passes += dropped > 0
        fractions.append(dropped)
    assert abs(cut_passes / n - p) <= tol(p * (1 - p), n)
    # documented: E[dropped fraction] = p/2; E[D²] = p(2C−1)/(6C)
    mean_d = p / 2
    var_d = p * (2 * C - 1) / (6 * C) - mean_d**2
    assert abs(sum(fractions) / n - mean_d) <= tol(var_d, n)


def test_structural_dropout_min_channels():
    torch.manual_seed(13)
    m = StructuralDropout(p=1.0, min_channels=5).train()
    for _ in range(20):
        y = m(torch.ones(2, 6, 3, 3))
        assert torch.equal((y[0, :, 0, 0] != 0), torch.tensor([True] * 5 + [False]))
    # no cut possible when C <= min_channels
    x = torch.rand(2, 5, 3, 3)
    assert m(x) is x


# ---------------------------------------------------------------------- Cutout


def test_cutout_zeroes_squares_of_documented_size():
    torch.manual_seed(14)
    m = Cutout().train()
    B, C, H, W = 128, 3, 32, 48
    side = m.side(H, W)
    assert side == round(0.25 * 32) == 8
    x = ones(B, C, H, W, grad=True)
    y = m(x)
    zero = y.detach() == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same hole in every channel
    interior = 0
    for b in range(B):
        rows = zero[b, 0].any(dim=1).nonzero().flatten()
        cols = zero[b, 0].any(dim=0).nonzero().flatten()
        assert rows.numel() > 0
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        # the zeroed set is one axis-aligned rectangle, a square clipped at the border
        assert zero[b, 0].sum() == (r1 - r0) * (c1 - c0)
        assert zero[b, 0, r0:r1, c0:c1].all()
        assert (r1 - r0) <= side and (c1 - c0) <= side
        if 0 < r0 and r1 < H and 0 < c0 and c1 < W:
            interior += 1
            assert (r1 - r0) == side and (c1 - c0) == side
        else:
            assert (r1 - r0) == side or r0 == 0 or r1 == H
            assert (c1 - c0) == side or c0 == 0 or c1 == W
    assert interior > B // 4
    # no rescaling; gradient 0 in the hole, 1 elsewhere
    assert torch.equal(y.detach()[~zero], torch.ones(int((~zero).sum())))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, y.detach())


def test_cutout_expected_area_and_holes():
    torch.manual_seed(15)
    H = W = 32
    m = Cutout(holes=1, size=0.25).train()
    s = m.side(H, W)

    def mean_len(length):  # E|[c − s//2, c − s//2 + s) ∩ [0, length)| for c ~ U{0..length−1}
        return sum(min(c - s // 2 + s, length) - max(c - s // 2, 0) for c in range(length)) / length

    expected = mean_len(H) * mean_len(W) / (H * W)
    y = m(torch.ones(2048, 1, H, W))
    frac = (y == 0).double().mean(dim=(1, 2, 3))
    # a per-image fraction lies in [0, s²/HW]: variance ≤ (s²/HW)²/4
    assert abs(frac.mean().item() - expected) <= tol((s * s / (H * W)) ** 2 / 4, frac.numel())
    # several holes: union of up to `holes` squares
    y3 = Cutout(holes=3, size=0.125).train()(torch.ones(64, 1, H, W))
    zeros3 = (y3 == 0).sum(dim=(1, 2, 3))
    assert (zeros3 <= 3 * 16).all() and (zeros3 >= 1).all() and (zeros3 > 16).any()


def test_cutout_acts_only_on_the_input():
    from medseg import regularizers

    assert Cutout.placement == "input" and InputDropout.placement == "input"
    for key in ("cutout", "input_dropout"):
        make_slot, input_module = regularizers.spec_to_factory({"name": key})
        assert type(input_module) is regularizers.get(key)
        slot = make_slot(0, 4)
        x = torch.rand(2, 4, 8, 8)
        assert slot.train()(x) is x  # the stages' slots stay empty


# -------------------------------------------------------------- all my keys


MINE = [Dropout, SpatialDropout, GaussianDropout, Uout, DropBlock, StochasticDepth,
        StructuralDropout, Cutout, InputDropout]


@pytest.mark.parametrize("cls", MINE, ids=lambda c: c.key)
def test_device_agnostic_without_host_sync(cls):
    # meta tensors have no data: any .item()/host round-trip or a tensor created on
    # the wrong device fails here, so the module runs on any accelerator unchanged
    m = cls().train()
    x = torch.empty(2, 8, 12, 12, device="meta", requires_grad=True)
    y = m(x, lambda t: 2 * t) if cls.placement == "residual" else m(x)
    assert y.device.type == "meta" and y.shape == x.shape
    y.sum().backward()


@pytest.mark.parametrize("cls,kwargs,message", [
    (Dropout, {"p": 1.5}, r"p must be in \[0, 1\), got 1.5"),
    (Dropout, {"p": 1.0}, r"p must be in \[0, 1\)"),
    (Dropout, {"p": "0.1"}, r"p must be a number"),
    (SpatialDropout, {"p": -0.1}, r"p must be in \[0, 1\)"),
    (GaussianDropout, {"p": float("nan")}, r"p must be in"),
    (Uout, {"beta": 1.5}, r"beta must be in \[0, 1\]"),
    (DropBlock, {"block_size": 0}, r"block_size must be an integer >= 1, got 0"),
    (DropBlock, {"block_size": 2.5}, r"block_size must be an integer"),
    (StochasticDepth, {"p_last": 0.0}, r"p_last must be in \(0, 1\]"),
    (StochasticDepth, {"mode": "layer"}, r"mode must be one of row, batch"),
    (StructuralDropout, {"min_channels": 0}, r"min_channels must be an integer >= 1"),
    (StructuralDropout, {"p": True}, r"p must be a number"),
    (Cutout, {"size": 0.0}, r"size must be in \(0, 1\]"),
    (Cutout, {"holes": 0}, r"holes must be an integer >= 1"),
    (InputDropout, {"p": 1}, r"p must be in \[0, 1\)"),
])
def test_bad_parameters_have_clear_messages(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("cls,zero", [
    (Dropout, {"p": 0}), (SpatialDropout, {"p": 0}), (GaussianDropout, {"p": 0}),
    (Uout, {"beta": 0}), (DropBlock, {"p": 0}), (StructuralDropout, {"p": 0}),
    (InputDropout, {"p": 0}), (StochasticDepth, {"p_last": 1.0}),
], ids=lambda v: v.key if isinstance(v, type) else "")
def test_zero_strength_is_identity_without_rng(cls, zero):
    # (cutout has no zero-strength setting: holes >= 1)
    m = cls(**zero).train()
    x = torch.rand(2, 4, 8, 8)
    state = torch.get_rng_state()
    y = m(x, torch.zeros_like) if cls.placement == "residual" else m(x)
    assert torch.equal(y, x)
    assert torch.equal(torch.get_rng_state(), state)
