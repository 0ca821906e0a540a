"""ForegroundSampler: epoch length, foreground share, reproducibility, DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medseg.data.sampling import ForegroundSampler, foreground_slices


def _labels(n: int, fg: list[int]) -> np.ndarray:
    labels = np.zeros((n, 8, 8), np.uint8)
    labels[fg, 3, 4] = 1
    return labels


def test_foreground_slices_finds_any_pixel():
    assert foreground_slices(_labels(6, [1, 4])).tolist() == [1, 4]
    assert foreground_slices(_labels(3, [])).tolist() == []


@pytest.mark.parametrize("fraction", [0.0, 0.33, 0.5, 1.0])
def test_foreground_share_over_an_epoch_is_binomial(fraction):
    n, fg = 4000, np.arange(0, 4000, 10)  # natural share p = 0.1
    sampler = ForegroundSampler(n, fg, fraction, seed=3)
    draws = sampler.indices()
    assert len(draws) == len(sampler) == n  # the epoch length is unchanged
    hits = int(np.isin(draws, fg).sum())
    expected = fraction + (1 - fraction) * 0.1
    if fraction == 1.0:
        assert hits == n
        return
    # two-sided binomial test at 1e-4: fails only if the share is really off
    assert stats.binomtest(hits, n, expected).pvalue > 1e-4, (hits / n, expected)


def test_fraction_zero_is_a_permutation():
    draws = ForegroundSampler(50, np.array([1, 2]), 0.0, seed=1).indices()
    assert sorted(draws.tolist()) == list(range(50))


def test_seeded_per_epoch_and_reproducible():
    a = ForegroundSampler(200, np.arange(5), 0.5, seed=7)
    b = ForegroundSampler(200, np.arange(5), 0.5, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ForegroundSampler(200, np.arange(5), 0.5, seed=8)) != first


def test_no_foreground_falls_back_to_uniform():
    draws = ForegroundSampler(20, np.array([], np.int64), 0.9, seed=0).indices()
    assert sorted(draws.tolist()) == list(range(20))


def test_ddp_ranks_each_get_their_share():
    """Lightning wraps a custom sampler in DistributedSamplerWrapper: each rank its shard."""
    from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

    n, fg = 3000, np.arange(0, 3000, 20)  # p = 0.05
    inner = ForegroundSampler(n, fg, 0.4, seed=11)
    shards = [list(DistributedSamplerWrapper(inner, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == n // 2
    assert sorted(shards[0] + shards[1]) == sorted(inner.indices().tolist())  # one shared list, split
    expected = 0.4 + 0.6 * 0.05
    for shard in shards:
        hits = int(np.isin(shard, fg).sum())
        assert stats.binomtest(hits, len(shard), expected).pvalue > 1e-4


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        ForegroundSampler(10, np.arange(2), 1.5)


def test_several_labels_each_get_at_least_their_share_of_the_forced_draws():
    """A label on 1 slice of 200 still gets ~f/L of the draws; one group is the binary draw."""
    from medseg.data.sampling import ForegroundSampler, foreground_groups

    labels = np.zeros((200, 4, 4), dtype=np.uint8)
    labels[:60, 0, 0] = 1          # a large organ on 60 slices
    labels[100, 1, 1] = 2          # a rare tumour on one slice
    groups = foreground_groups(labels)
    assert [g.tolist() for g in groups] == [list(range(60)), [100]]
    draws = np.concatenate([ForegroundSampler(200, groups, 1.0, seed=0).indices() for _ in range(1)]
                           + [ForegroundSampler(200, groups, 1.0, seed=s).indices() for s in range(1, 20)])
    share = np.mean(draws == 100)
    assert 0.45 < share < 0.55           # half of the forced draws pick the tumour label
    binary = (labels > 0).astype(np.uint8)
    (only,) = foreground_groups(binary)
    a = ForegroundSampler(200, [only], 0.33, seed=3).indices()
    b = ForegroundSampler(200, only, 0.33, seed=3).indices()
    np.testing.assert_array_equal(a, b)


def test_epoch_length_cycles_whole_permutations_and_defaults_to_one_pass():
    n = 10
    plain = ForegroundSampler(n, np.arange(3), 0.0, seed=5).indices()
    # the default stream is one seeded permutation (what every earlier run drew)
    expected = np.random.default_rng(np.random.SeedSequence([5, 0])).permutation(n)
    assert plain.tolist() == expected.tolist()
    assert ForegroundSampler(n, np.arange(3), 0.0, seed=5, epoch_length=n).indices().tolist() == plain.tolist()
    long = ForegroundSampler(n, np.arange(3), 0.0, seed=5, epoch_length=25)
    draws = long.indices()
    assert len(long) == len(draws) == 25
    assert sorted(draws[:10]) == sorted(draws[10:20]) == list(range(n))  # whole passes first
    assert len(set(draws[20:])) == 5
    short = ForegroundSampler(n, np.arange(3), 0.0, seed=5, epoch_length=4).indices()
    assert short.tolist() == plain[:4].tolist()
