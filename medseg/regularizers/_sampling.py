"""Small sampling helpers shared by the channel-selection regularizers
(``wcd``, ``channel_dropblock``, ``corrdrop_*``).

Everything here runs without gradient on float32 statistics, draws from torch's
global RNG (so ``torch.manual_seed`` reproduces it) and is vectorised over the batch.
"""

from __future__ import annotations

import contextlib
import math

import torch


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed in: float64 for float64 input, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@contextlib.contextmanager
def statistics_mode(device: torch.device):
    """``no_grad`` with autocast switched off, so statistics stay in full precision."""
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
        yield


def stochastic_round(value: float, n: int, device: torch.device) -> torch.Tensor:
    """``n`` integers ``floor(value) + Bernoulli(value − floor(value))`` (int64).

    Their mean is exactly ``value`` in expectation, so a rate times a channel count
    that is not an integer (0.1 × 16 = 1.6) is met on average instead of being
    rounded to 2 (12.5 %) every time. Consumes RNG only when ``value`` is fractional.
    """
    base = math.floor(value)
    frac = value - base
    counts = torch.full((n,), base, dtype=torch.long, device=device)
    if frac > 0:
        counts += (torch.rand(n, device=device) < frac).long()
    return counts


def descending_ranks(values: torch.Tensor, *, random_ties: bool = True) -> torch.Tensor:
    """Rank (0 = largest) of every entry along the last dim.

    With ``random_ties`` the entries are visited in a fresh random order and sorted
    stably, so equal values (dead channels, coinciding peaks) are ordered uniformly
    at random rather than by channel index; without it ties follow the index.
    """
    if random_ties:
        shuffle = torch.rand(values.shape, device=values.device).argsort(dim=-1)
        order = values.gather(-1, shuffle).argsort(dim=-1, descending=True, stable=True)
        order = shuffle.gather(-1, order)  # back to positions in the original indexing
    else:
        order = values.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    arange = torch.arange(values.shape[-1], device=values.device).expand_as(order)
    ranks.scatter_(-1, order, arange.contiguous())
    return ranks
