"""Channel- and batch-level comparison regularizers: wcd, focused_dropout, sbdrop,
corrdrop_spatial, corrdrop_channel, channel_dropblock.

Statistical tolerances are derived from the number of draws, never guessed: a mean
of ``n`` independent draws of a quantity with variance ``σ²`` has standard error
``σ/√n`` and we allow 6 standard errors (a two-sided miss has probability < 2e-9,
so a failure means a real deviation, not bad luck). For Bernoulli/binomial
proportions ``σ² = q(1 − q)``; where only a bound on ``σ²`` is known we use the bound.
Every test seeds torch's global RNG, so each run is also reproducible.
"""

from __future__ import annotations

import math

import pytest
import torch

from medseg.regularizers import corrdrop
from medseg.regularizers.channel_dropblock import ChannelDropBlock
from medseg.regularizers.corrdrop import ChannelCorrDrop, SpatialCorrDrop, correlation_scores
from medseg.regularizers.focused_dropout import FocusedDropout
from medseg.regularizers.registry import build
from medseg.regularizers.sbdrop import SubBatchDrop
from medseg.regularizers.wcd import WeightedChannelDropout

Z = 6.0  # standard errors allowed (see module docstring)


def tolerance(variance: float, n: int) -> float:
    """``Z`` standard errors of the mean of ``n`` independent draws with ``variance``."""
    return Z * math.sqrt(variance / n)


# (class, kwargs making it act on every call)
MULTIPLICATIVE = {
    "wcd": (WeightedChannelDropout, {}),
    "focused_dropout": (FocusedDropout, {"participation": 1.0}),
    "corrdrop_spatial": (SpatialCorrDrop, {}),
    "corrdrop_channel": (ChannelCorrDrop, {}),
    "channel_dropblock": (ChannelDropBlock, {}),
    "channel_dropblock_max": (ChannelDropBlock, {"metric": "max"}),
}
ALL = {**MULTIPLICATIVE, "sbdrop": (SubBatchDrop, {})}
CHANNEL_LEVEL = ["wcd", "corrdrop_channel", "channel_dropblock", "channel_dropblock_max"]


def make(key: str, train: bool = True, **override):
    cls, kwargs = ALL[key]
    module = cls(**{**kwargs, **override})
    return module.train(train)


def positive_input(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) + 0.1


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("key", sorted(ALL))
def test_registered_keys_build_the_classes(key):
    cls, _ = ALL[key]
    name = "channel_dropblock" if key.startswith("channel_dropblock") else key
    assert type(build(name)) is cls and cls.placement == "slot"


@pytest.mark.parametrize("key", sorted(MULTIPLICATIVE))
def test_eval_is_exact_identity_and_consumes_no_rng(key):
    module = make(key, train=False)
    x = torch.randn(2, 8, 6, 6)
    state = torch.get_rng_state()
    y = module(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(y, x)


def test_sbdrop_eval_scales_by_sqrt_one_minus_gamma_without_rng():
    module = SubBatchDrop(gamma=0.19).eval()
    x = torch.randn(3, 4, 5, 5)
    state = torch.get_rng_state()
    y = module(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert module.test_scale == pytest.approx(0.9)
    assert torch.allclose(y, 0.9 * x, rtol=1e-6, atol=0)
    # gamma = 0 is the identity in both modes
    for train in (True, False):
        assert torch.equal(SubBatchDrop(gamma=0.0).train(train)(x), x)


@pytest.mark.parametrize("key, zero", [
    ("wcd", {"keep_ratio": 1.0}), ("wcd", {"apply_prob": 0.0}),
    ("focused_dropout", {"participation": 0.0}), ("corrdrop_spatial", {"p": 0.0}),
    ("corrdrop_channel", {"p": 0.0}), ("channel_dropblock", {"gamma": 0.0}),
])
def test_zero_strength_is_identity_in_training(key, zero):
    module = make(key, **zero)
    x = torch.randn(2, 8, 6, 6)
    state = torch.get_rng_state()
    assert torch.equal(module(x), x)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("key", sorted(ALL))
def test_reproducible_under_seed_and_shape_dtype_preserved(key):
    module = make(key)
    x = positive_input(4, 16, 12, 12)
    torch.manual_seed(123)
    a = module(x)
    torch.manual_seed(123)
    b = module(x)
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype
    outs = []
    for seed in range(5):
        torch.manual_seed(seed)
        outs.append(module(x))
    assert any(not torch.equal(outs[0], o) for o in outs[1:]), "the mask never changes"


@pytest.mark.parametrize("key", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_and_autocast(key, dtype):
    module = make(key)
    x32 = positive_input(4, 16, 12, 12).requires_grad_()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=dtype):
        y = module(x32)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x32.grad).all()
    x = positive_input(4, 16, 12, 12).to(dtype).requires_grad_()
    torch.manual_seed(0)
    y = module(x)
    assert y.dtype == dtype and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("key", sorted(MULTIPLICATIVE))
def test_gradient_is_the_multiplier_and_exactly_zero_where_dropped(key):
    module = make(key)
    x = positive_input(6, 16, 12, 12).requires_grad_()
    torch.manual_seed(7)
    y = module(x)
    g = torch.randn_like(y)
    y.backward(g)
    dropped = y == 0  # x > 0 and every multiplier is > 0 where kept
    assert dropped.any() and not dropped.all()
    assert torch.equal(x.grad[dropped], torch.zeros_like(x.grad[dropped]))
    factor = (y / x).detach()
    assert torch.allclose(x.grad, g * factor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls, kwargs, name", [
    (WeightedChannelDropout, {"keep_ratio": 0.0}, "keep_ratio"),
    (WeightedChannelDropout, {"keep_ratio": 1.5}, "keep_ratio"),
    (WeightedChannelDropout, {"apply_prob": -0.1}, "apply_prob"),
    (WeightedChannelDropout, {"rescale": "mean"}, "rescale"),
    (FocusedDropout, {"participation": 1.1}, "participation"),
    (FocusedDropout, {"low": 0.9, "high": 0.6}, "low"),
    (FocusedDropout, {"high": 1.5}, "high"),
    (SubBatchDrop, {"gamma": 1.0}, "gamma"),
    (SubBatchDrop, {"gamma": "0.1"}, "gamma"),
    (SpatialCorrDrop, {"p": -0.1}, "p"),
    (SpatialCorrDrop, {"block_size": 0}, "block_size"),
    (SpatialCorrDrop, {"block_size": 2.5}, "block_size"),
    (ChannelCorrDrop, {"p": 1.0}, "p"),
    (ChannelDropBlock, {"gamma": 1.0}, "gamma"),
    (ChannelDropBlock, {"metric": "cosine"}, "metric"),
])
def test_bad_parameters_are_rejected_with_the_name(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("key, fragment", [
    ("wcd", "keep_ratio=0.9"), ("focused_dropout", "participation=1.0"),
    ("sbdrop", "gamma=0.1"), ("corrdrop_spatial", "block_size=3"),
    ("corrdrop_channel", "p=0.1"), ("channel_dropblock_max", "metric='max'"),
])
def test_repr_shows_parameters(key, fragment):
    assert fragment in repr(make(key))


@pytest.mark.parametrize("key", CHANNEL_LEVEL)
def test_channel_methods_drop_whole_channels(key):
    module = make(key)
    x = positive_input(32, 16, 6, 6)
    torch.manual_seed(3)
    y = module(x)
    ratio = y / x  # one multiplier per (sample, channel)
    flat = ratio.flatten(2)
    assert torch.allclose(flat, flat[:, :, :1].expand_as(flat), rtol=1e-5, atol=0)
    assert (flat[:, :, 0] == 0).any()


# --------------------------------------------------------------------------- wcd


def test_wcd_drops_the_documented_fraction_per_sample():
    # C = 16, keep_ratio 0.9: M = 14 + Bernoulli(0.4) kept, so 1 or 2 channels dropped
    # (mean 1.6 = 10 %). Per sample D = (2 − Bernoulli(0.4)) / 16, Var D = 0.24 / 256.
    B, C = 4000, 16
    torch.manual_seed(0)
    y = WeightedChannelDropout().train()(positive_input(B, C, 2, 2))
    dropped = (y[:, :, 0, 0] == 0).sum(dim=1)
    assert set(dropped.unique().tolist()) <= {1, 2}
    frac = dropped.double().mean().item() / C
    assert abs(frac - 0.1) < tolerance(0.24 / C**2, B)


def test_wcd_keeps_higher_rated_channels_with_the_weighted_probability():
    # Two channels with GAP 1 and 3, keep one (keep_ratio 0.5): weighted random
    # selection keeps channel 1 with probability 3 / (1 + 3) = 0.75.
    B = 8000
    x = torch.ones(B, 2, 3, 3)
    x[:, 1] = 3.0
    torch.manual_seed(1)
    y = WeightedChannelDropout(keep_ratio=0.5).train()(x)
    kept_high = (y[:, 1, 0, 0] != 0).double()
    assert torch.all((y[:, 0, 0, 0] != 0).double() + kept_high == 1)
    assert abs(kept_high.mean().item() - 0.75) < tolerance(0.75 * 0.25, B)


def test_wcd_low_gap_channels_are_dropped_more_often():
    B, C = 3000, 8
    x = torch.ones(B, C, 2, 2) * torch.arange(1, C + 1, dtype=torch.float32)[None, :, None, None]
    torch.manual_seed(2)
    y = WeightedChannelDropout(keep_ratio=0.75).train()(x)
    rate = (y[:, :, 0, 0] == 0).double().mean(dim=0)  # drop rate per channel
    # adjacent channels need not differ significantly, the extremes must
    se = math.sqrt(0.25 / B)
    assert rate[0] - rate[-1] > 2 * Z * se
    assert rate[:4].mean() > rate[4:].mean()


def test_wcd_score_rescale_preserves_each_samples_total_activation():
    x = positive_input(64, 16, 5, 5)
    torch.manual_seed(4)
    y = WeightedChannelDropout(keep_ratio=0.7).train()(x)
    assert torch.allclose(y.mean(dim=(2, 3)).sum(dim=1), x.mean(dim=(2, 3)).sum(dim=1), rtol=1e-5)


def test_wcd_count_rescale_is_c_over_m():
    x = positive_input(32, 20, 3, 3)  # 0.9 * 20 = 18 kept exactly
    torch.manual_seed(5)
    y = WeightedChannelDropout(rescale="count").train()(x)
    kept = y[:, :, 0, 0] != 0
    assert torch.all(kept.sum(dim=1) == 18)
    assert torch.allclose(y[kept.nonzero(as_tuple=True)], (x * 20 / 18)[kept.nonzero(as_tuple=True)])


def test_wcd_random_number_generator_applies_selection_with_apply_prob():
    # C = 20: an applied sample drops exactly 2 channels; whether a sample is
    # affected is Bernoulli(apply_prob = 0.5).
    B = 4000
    torch.manual_seed(6)
    y = WeightedChannelDropout(apply_prob=0.5).train()(positive_input(B, 20, 2, 2))
    dropped = (y[:, :, 0, 0] == 0).sum(dim=1)
    assert set(dropped.unique().tolist()) == {0, 2}
    share = (dropped > 0).double().mean().item()
    assert abs(share - 0.5) < tolerance(0.25, B)


# --------------------------------------------------------------------------- focused


def test_focused_dropout_participates_in_the_documented_share_of_batches():
    calls = 3000
    module = FocusedDropout().train()  # participation 0.1
    x = positive_input(1, 2, 4, 4)
    torch.manual_seed(8)
    changed = sum(not torch.equal(module(x), x) for _ in range(calls))
    assert abs(changed / calls - 0.1) < tolerance(0.1 * 0.9, calls)


def test_focused_dropout_keeps_units_where_the_reference_channel_is_high():
    x = positive_input(40, 6, 10, 10)
    torch.manual_seed(9)
    y = FocusedDropout(participation=1.0).train()(x)
    ref = x.mean(dim=(2, 3)).argmax(dim=1)
    ref_map = x[torch.arange(40), ref]
    peak = ref_map.amax(dim=(1, 2), keepdim=True)
    kept = y != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # one mask for all channels
    keep = kept[:, 0]
    assert torch.equal(y[kept], x[kept])  # no rescaling
    assert torch.all(ref_map[keep] > 0.6 * peak.expand_as(ref_map)[keep])
    assert torch.all(ref_map[~keep] <= 0.9 * peak.expand_as(ref_map)[~keep])
    assert keep.any(dim=(1, 2)).all() and (~keep).any()


def test_focused_dropout_threshold_ratio_is_uniform_between_low_and_high():
    # The reference channel is a ramp 0.005 … 1 over 200 pixels: the kept share of it
    # is 1 − ratio (± 1/200), so its mean estimates 1 − E[ratio] = 1 − 0.75 with
    # Var = (0.9 − 0.6)² / 12 per sample.
    B, n = 2000, 200
    ramp = torch.arange(1, n + 1, dtype=torch.float32) / n
    x = torch.zeros(B, 2, 1, n)
    x[:, 0, 0] = ramp
    x[:, 1, 0] = 0.1
    torch.manual_seed(10)
    y = FocusedDropout(participation=1.0).train()(x)
    share = (y[:, 0, 0] != 0).double().mean(dim=1)
    assert share.min() >= 0.1 - 1 / n and share.max() <= 0.4 + 1 / n
    assert abs(share.mean().item() - 0.25) < tolerance(0.09 / 12, B) + 1 / n
    assert share.std() > 0.05  # a random ratio, not a fixed one


def test_focused_dropout_leaves_samples_without_a_positive_peak():
    x = -positive_input(3, 4, 5, 5)
    torch.manual_seed(11)
    assert torch.equal(FocusedDropout(participation=1.0).train()(x), x)


# --------------------------------------------------------------------------- sbdrop


def test_sbdrop_masks_the_batch_dimension_and_refills_with_kept_means():
    x = torch.randn(64, 5, 4, 4)
    torch.manual_seed(12)
    y = SubBatchDrop(gamma=0.3).train()(x)
    same = (y == x).flatten(1).all(dim=1)
    dropped = ~same
    assert dropped.any() and same.any()
    mu = x[same].mean(dim=(0, 2, 3))  # per-channel mean of the kept sub-batch
    expected = mu[None, :, None, None].expand(int(dropped.sum()), 5, 4, 4)
    assert torch.allclose(y[dropped], expected, atol=1e-6)
    # the batch mean of every channel equals the kept sub-batch's mean
    assert torch.allclose(y.mean(dim=(0, 2, 3)), mu, atol=1e-6)


def test_sbdrop_drops_gamma_of_the_samples_on_average():
    B, gamma = 10000, 0.1
    x = torch.randn(B, 1, 1, 1)
    torch.manual_seed(13)
    y = SubBatchDrop(gamma=gamma).train()(x)
    frac = (y != x).double().mean().item()
    # gamma − gamma**B is gamma to double precision here
    assert abs(frac - gamma) < tolerance(gamma * (1 - gamma), B)


def test_sbdrop_gradient_is_zero_on_dropped_samples():
    x = torch.randn(16, 3, 4, 4, requires_grad=True)
    torch.manual_seed(14)
    y = SubBatchDrop(gamma=0.4).train()(x)
    kept = (y == x).flatten(1).all(dim=1).detach()
    assert kept.any() and not kept.all()
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))
    # kept units: their own gradient plus their share of the refill mean
    share = g[~kept].sum(dim=(0, 2, 3)) / (int(kept.sum()) * 16)
    assert torch.allclose(x.grad[kept], g[kept] + share[None, :, None, None], atol=1e-6)


def test_sbdrop_with_nothing_kept_returns_the_input():
    x = torch.randn(1, 3, 4, 4)
    module = SubBatchDrop(gamma=0.9).train()
    torch.manual_seed(15)
    for _ in range(20):
        assert torch.equal(module(x), x)


# --------------------------------------------------------------------------- corrdrop


@pytest.mark.parametrize("signed", [False, True])
def test_correlation_scores_match_the_paper_formula(signed, monkeypatch):
    torch.manual_seed(16)
    a = torch.rand(3, 9, 5, dtype=torch.float64) - (0.5 if signed else 0.0)
    unit = a / a.norm(dim=2, keepdim=True)
    P = (unit @ unit.transpose(1, 2) - torch.eye(9, dtype=torch.float64)).abs()
    monkeypatch.setattr(corrdrop, "_CHUNK_ELEMENTS", 3 * 9 * 4)  # 4-row blocks, ragged last
    assert torch.allclose(correlation_scores(a), P.mean(dim=2), atol=1e-12)


def test_corrdrop_spatial_drops_p_of_the_blocks_on_average():
    # 8×8 map, block 2: N = 16 pooled units per sample. Given the candidates, the
    # number dropped is Binomial(#cand, p·N/#cand), mean p·N, so its variance is at
    # most p·N: the per-sample dropped fraction has Var ≤ p / N.
    B, N, p = 2000, 16, 0.1
    x = positive_input(B, 4, 8, 8)
    torch.manual_seed(17)
    y = SpatialCorrDrop(p=p, block_size=2).train()(x)
    dropped = y[:, 0] == 0
    assert torch.equal(dropped[:, None].expand_as(y), y == 0)  # same mask in every channel
    blocks = dropped.view(B, 4, 2, 4, 2)
    assert torch.equal(blocks.all(dim=(2, 4)), blocks.any(dim=(2, 4)))  # whole 2×2 blocks
    frac = dropped.double().mean().item()
    assert abs(frac - p) < tolerance(p / N, B)
    scale = dropped.numel() / (~dropped).sum()
    assert torch.allclose(y[y != 0], (x * scale)[y != 0], rtol=1e-5)


def test_corrdrop_spatial_prefers_dropping_less_correlated_blocks():
    # 2×2 pooled units (block 2 on 4×4): three carry feature direction e0, one e1.
    # Their scores are F = 0.5 (correlated) and 0 (orthogonal).
    B = 20000
    x = torch.zeros(B, 2, 4, 4)
    x[:, 0] = 1.0
    x[:, 0, 2:, 2:] = 0.0
    x[:, 1, 2:, 2:] = 1.0
    torch.manual_seed(18)
    y = SpatialCorrDrop(p=0.3, block_size=2).train()(x)
    unit_dropped = (y.sum(dim=1) == 0).view(B, 2, 2, 2, 2).all(dim=(2, 4)).double()
    lo = unit_dropped[:, 1, 1].mean().item()  # the orthogonal unit
    hi = unit_dropped.flatten(1)[:, :3].mean().item()  # the three correlated ones
    # conservative SE: treat the three correlated units of a sample as one draw
    assert lo - hi > Z * math.sqrt((lo * (1 - lo) + hi * (1 - hi)) / B)


def test_corrdrop_spatial_clips_the_block_on_small_maps():
    # 3×3 map with block 3: clipped to block 1, N = 9 units, mean rate still p
    # (Var ≤ p / N per sample, as above; no candidates has probability ≈ 9**-9).
    B, N, p = 4000, 9, 0.1
    module = SpatialCorrDrop(p=p, block_size=3).train()
    assert module.effective_block(3, 3) == 1 and module.effective_block(6, 9) == 3
    torch.manual_seed(24)
    y = module(positive_input(B, 4, 3, 3))
    frac = (y[:, 0] == 0).double().mean().item()
    assert abs(frac - p) < tolerance(p / N, B)


def test_corrdrop_spatial_handles_sizes_not_divisible_by_the_block():
    x = positive_input(3, 4, 7, 11)
    torch.manual_seed(19)
    y = SpatialCorrDrop(p=0.5, block_size=3).train()(x)
    assert y.shape == x.shape


def test_corrdrop_channel_drops_p_of_the_channels_on_average():
    B, C, p = 3000, 16, 0.1
    x = positive_input(B, C, 3, 3)
    torch.manual_seed(20)
    y = ChannelCorrDrop(p=p).train()(x)
    dropped = y[:, :, 0, 0] == 0
    frac = dropped.double().mean().item()
    assert abs(frac - p) < tolerance(p / C, B)  # Var ≤ p / C, as for the spatial variant
    scale = dropped.numel() / (~dropped).sum()
    assert torch.allclose(y[~dropped], (x * scale)[~dropped], rtol=1e-5)


def test_corrdrop_channel_prefers_dropping_less_correlated_channels():
    # channels 0 and 1 carry the same map, channel 2 a disjoint one: F = (1/3, 1/3, 0).
    B = 20000
    x = torch.zeros(B, 3, 2, 2)
    x[:, 0, 0] = 1.0
    x[:, 1, 0] = 2.0
    x[:, 2, 1] = 1.0
    torch.manual_seed(21)
    y = ChannelCorrDrop(p=0.3).train()(x)
    dropped = (y.flatten(2) == 0).all(dim=2).double()
    lo, hi = dropped[:, 2].mean().item(), dropped[:, :2].mean().item()
    assert lo - hi > Z * math.sqrt((lo * (1 - lo) + hi * (1 - hi)) / B)


# --------------------------------------------------------------------------- channel dropblock


@pytest.mark.parametrize("metric", ["bilinear", "max"])
def test_channel_dropblock_drops_gamma_of_the_channels_and_rescales(metric):
    # C = 16, gamma 0.1: n = 1 + Bernoulli(0.6) channels, mean 1.6 = 10 %;
    # Var(n / C) = 0.24 / 256.
    B, C = 4000, 16
    x = positive_input(B, C, 4, 4)
    torch.manual_seed(22)
    y = ChannelDropBlock(metric=metric).train()(x)
    dropped = y[:, :, 0, 0] == 0
    n = dropped.sum(dim=1)
    assert set(n.unique().tolist()) == {1, 2}
    assert abs(n.double().mean().item() / C - 0.1) < tolerance(0.24 / C**2, B)
    scale = (C / (C - n)).float()[:, None, None, None]
    kept = ~dropped[:, :, None, None].expand_as(y)
    assert torch.allclose(y[kept], (x * scale)[kept], rtol=1e-5)


@pytest.mark.parametrize("metric", ["bilinear", "max"])
def test_channel_dropblock_drops_mutually_correlated_channels_together(metric):
    # Two groups of 4 channels: group A lives (and peaks) in the top-left quadrant,
    # group B in the bottom-right one. With gamma 0.5 the dropped group of 4 must be
    # exactly one of them, each chosen with probability 1/2 (the random row).
    B, C = 2000, 8
    x = torch.zeros(B, C, 8, 8)
    noise = positive_input(B, C, 4, 4) * 0.1
    x[:, :4, :4, :4] = 1.0 + noise[:, :4]
    x[:, 4:, 4:, 4:] = 1.0 + noise[:, 4:]
    x[:, :4, 1, 1] += 2.0  # clear peaks, near each other within a group
    x[:, 4:, 6, 6] += 2.0
    torch.manual_seed(23)
    y = ChannelDropBlock(gamma=0.5, metric=metric).train()(x)
    dropped = (y.flatten(2) == 0).all(dim=2)
    group_a = dropped[:, :4].all(dim=1) & ~dropped[:, 4:].any(dim=1)
    group_b = dropped[:, 4:].all(dim=1) & ~dropped[:, :4].any(dim=1)
    assert torch.all(group_a ^ group_b)
    assert abs(group_a.double().mean().item() - 0.5) < tolerance(0.25, B)
