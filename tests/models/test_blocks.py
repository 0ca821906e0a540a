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


# ----------------------------------------------------------------------------- ReLU fusion
def _unfused_pair(cls, cin, cout, mask):
    """A block with Heuristic Dropout (fused) and the same block computed as separate
    modules: the original units with their ReLU, then a standalone Heuristic Dropout."""
    from medseg.regularizers.heuristic import HeuristicDropout

    torch.manual_seed(0)
    fused = cls(cin, cout, HeuristicDropout(rate=0.3, mask=mask)).double()
    plain = cls(cin, cout, None).double()
    plain.load_state_dict(fused.state_dict())
    reg = HeuristicDropout(rate=0.3, mask=mask)
    plain.standalone = reg  # follows plain.train()/eval()
    if cls is ConvBlock:
        return fused, lambda x: plain.conv2(reg(plain.conv1(x))), plain
    return fused, lambda x: reg(plain.conv(x)), plain


@pytest.mark.parametrize("cls,cin,cout", [(ConvBlock, 3, 10), (FusionConv, 10, 10)])
@pytest.mark.parametrize("mask", ["laplace", "zero"])
def test_heuristic_dropout_takes_over_the_relu_with_identical_values_and_gradients(cls, cin, cout, mask):
    fused, unfused, plain = _unfused_pair(cls, cin, cout, mask)
    first = fused.conv1 if cls is ConvBlock else fused.conv
    assert not hasattr(first.adn, "A")  # the ReLU moved into the slot module
    assert fused.reg.activation == "relu" and "activation='relu'" in repr(fused)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, cin, 9, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, cout, 9, 7, generator=g, dtype=torch.float64)
    for mode in (True, False):
        fused.train(mode), plain.train(mode)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = fused(xa), unfused(xb)
        assert torch.equal(ya, yb)
        if mode:
            (ya * w).sum().backward()
            (yb * w).sum().backward()
            assert torch.equal(xa.grad, xb.grad)
            for p, q in zip(fused.parameters(), plain.parameters()):
                assert torch.equal(p.grad, q.grad)


def test_fused_heuristic_dropout_on_a_non_contiguous_input():
    from medseg.regularizers.heuristic import HeuristicDropout

    fused, ref = HeuristicDropout(rate=0.3), HeuristicDropout(rate=0.3)
    fused.fuse_relu()
    pre = torch.randn(2, 10, 6, 5).to(memory_format=torch.channels_last)
    a, b = pre.clone().requires_grad_(), pre.clone().requires_grad_()
    ya, yb = fused(a * 1), ref(torch.relu(b))
    assert torch.equal(ya, yb)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_fused_block_keeps_one_full_size_tensor_fewer_for_backward():
    fused, unfused, plain = _unfused_pair(ConvBlock, 4, 16, "laplace")
    fused.train(), plain.train()
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[t.data_ptr()] = t.numel() * t.element_size()  # shared storage counted once
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x.clone().requires_grad_())
        return sum(seen.values())

    activation = 2 * 16 * 16 * 16 * 8  # one (B, C, H, W) float64 tensor
    saved_fused, saved_unfused = saved_bytes(fused), saved_bytes(unfused)
    # unfused: the ReLU's output and Heuristic Dropout's output both kept; fused: one,
    # plus the selected planes' values (round(0.3·16) = 5 of 16 channels here)
    assert saved_unfused - saved_fused >= activation * (1 - 5 / 16) - 1


def test_fused_heuristic_dropout_under_autocast():
    fused, unfused, plain = _unfused_pair(ConvBlock, 3, 10, "laplace")
    fused.float().train(), plain.float().train()
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya, yb = fused(x), unfused(x)
    assert ya.dtype == yb.dtype and torch.equal(ya, yb)
