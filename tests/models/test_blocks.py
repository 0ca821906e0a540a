"""The shared conv block and its regularizer slot (placement protocol)."""

from __future__ import annotations

import pytest
import torch

from medseg.models.blocks import ConvBlock, FusionConv, check_size
from medseg.regularizers import Regularizer


class Recorder(Regularizer):
    """Slot regularizer that records its input and multiplies it by ``factor``."""

    def __init__(self, factor: float = 1.0):
        super().__init__()
        self.factor = factor
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return x * self.factor


class ScaledResidual(Regularizer):
    """Residual regularizer: h + 2·branch(h) (stands in for Stochastic Depth)."""

    placement = "residual"

    def forward(self, h, branch):
        return h + 2.0 * branch(h)


def _block(reg, cls=ConvBlock, cin=3, cout=5):
    torch.manual_seed(0)
    return cls(cin, cout, reg).eval()  # eval: BatchNorm uses its running stats


def test_slot_sits_between_the_two_convs():
    reg = Recorder()
    block = _block(reg)
    x = torch.randn(2, 3, 8, 8)
    out = block(x)
    assert torch.equal(reg.seen, block.conv1(x))
    assert torch.equal(out, block.conv2(block.conv1(x)))
    # what the slot returns is what the second conv sees
    reg.factor = 0.0
    assert torch.allclose(block(x), block.conv2(torch.zeros(2, 5, 8, 8)))


def test_residual_placement_hands_the_second_conv_to_the_regularizer():
    block = _block(ScaledResidual())
    assert block.residual
    x = torch.randn(2, 3, 8, 8)
    h = block.conv1(x)
    assert torch.allclose(block(x), h + 2.0 * block.conv2(h))
    assert "residual=True" in repr(block)


def test_block_without_regularizer_is_identity_slot():
    block = _block(None)
    assert type(block.reg) is Regularizer
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(block(x), block.conv2(block.conv1(x)))


def test_fusion_conv_slot_follows_the_activation():
    reg = Recorder(factor=-1.0)
    fuse = _block(reg, FusionConv, 6, 6)
    x = torch.randn(2, 6, 8, 8)
    out = fuse(x)
    assert torch.equal(reg.seen, fuse.conv(x))
    assert torch.equal(out, -fuse.conv(x))
    assert (out <= 0).all()  # the slot acts after the ReLU


def test_fusion_conv_residual_makes_the_conv_a_branch():
    fuse = _block(ScaledResidual(), FusionConv, 6, 6)
    x = torch.randn(2, 6, 8, 8)
    assert torch.allclose(fuse(x), x + 2.0 * fuse.conv(x))
    with pytest.raises(ValueError, match="equal widths"):
        FusionConv(6, 4, ScaledResidual())


def test_block_uses_bias_free_convs_and_inplace_relu():
    block = ConvBlock(3, 4, norm="instance")
    for unit in (block.conv1, block.conv2):
        assert unit.conv.bias is None
        assert unit.adn.A.inplace
        assert isinstance(unit.adn.N, torch.nn.InstanceNorm2d) and unit.adn.N.affine


def test_check_size_rejects_sizes_not_divisible_by_2_pow_depth():
    check_size(torch.zeros(1, 1, 32, 16), 4, 1)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 16"):
        check_size(torch.zeros(1, 1, 32, 24), 4, 1)
    with pytest.raises(ValueError, match="shape"):
        check_size(torch.zeros(1, 2, 32, 32), 4, 1)
