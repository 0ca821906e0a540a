"""Probabilities → native mask (medseg.data.preprocess), shared by evaluation and predict."""

from __future__ import annotations

import torch

from medseg.data.preprocess import probabilities_to_native_mask


def test_mask_is_the_argmax_with_first_class_on_ties():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 4, 16, 16, generator=g), dim=1)
    probs[0, :, :4] = 0.25  # exact four-way ties → class 0
    probs[1, 2:, 4:8] = 0.5  # tie between classes 2 and 3 → class 2
    probs[1, :2, 4:8] = 0.0
    mask = probabilities_to_native_mask(probs, (16, 16))
    assert mask.dtype == torch.uint8
    assert torch.equal(mask, probs.argmax(dim=1).to(torch.uint8))
    assert (mask[0, :4] == 0).all() and (mask[1, 4:8] == 2).all()


def test_mask_is_resampled_to_the_native_grid():
    probs = torch.zeros(1, 2, 8, 8)
    probs[0, 1, :, 4:] = 1.0
    probs[0, 0, :, :4] = 1.0
    mask = probabilities_to_native_mask(probs, (16, 32))
    assert mask.shape == (1, 16, 32)
    assert (mask[0, :, :14] == 0).all() and (mask[0, :, 18:] == 1).all()
