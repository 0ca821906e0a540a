"""U-Net, Attention U-Net and UNet3+: the model registry, every model × every
regularizer, the slot count and order, attention gates and deep supervision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg import models, regularizers
from medseg.errors import ConfigError
from medseg.models.attention_unet import AttentionGate
from medseg.models.blocks import ConvBlock, FusionConv
from medseg.regularizers import Regularizer

MODELS = models.available()
REGULARIZERS = regularizers.available()
DEPTH = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the tensors here are tiny: one thread is faster and immune to oversubscribed cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stage_blocks(model):
    return [m for m in model.modules() if isinstance(m, (ConvBlock, FusionConv))]


def _finite_grads(model):
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return all(g is not None and torch.isfinite(g).all() for g in grads)


def test_available_models():
    assert MODELS == ["unet", "attention_unet", "unet3plus"]


@pytest.mark.parametrize("reg_name", REGULARIZERS)
@pytest.mark.parametrize("name", MODELS)
def test_every_model_with_every_regularizer(name, reg_name):
    torch.manual_seed(0)
    model = models.build(name, 1, 3, base_channels=4, depth=DEPTH, regularizer=reg_name)
    cls = regularizers.get(reg_name)

    # one slot per encoder (incl. bottleneck) and decoder stage block, nothing else
    blocks = _stage_blocks(model)
    assert len(blocks) == 2 * DEPTH + 1 == model.num_slots
    regs = [m for m in model.modules() if isinstance(m, Regularizer)]
    if cls.placement == "input":
        assert isinstance(model.input_regularizer, cls)
        assert all(type(b.reg) is Regularizer for b in blocks)  # identity slots
        assert len(regs) == 2 * DEPTH + 2
        shown = model.input_regularizer
    else:
        assert model.input_regularizer is None
        assert all(type(b.reg) is cls for b in blocks)
        assert len(regs) == 2 * DEPTH + 1
        assert len({id(b.reg) for b in blocks}) == len(blocks)  # a fresh module per stage
        shown = blocks[0].reg

    # print(model) shows the regularizer class and its parameters
    text = str(model)
    first_line = repr(shown).splitlines()[0]
    assert first_line.startswith(cls.__name__ + "(")
    assert first_line in text
    for param in regularizers.parameters(reg_name):
        assert f"{param}=" in first_line, f"{cls.__name__} does not show '{param}' in its repr"
    assert f"regularizer={reg_name}" in text

    # training forward/backward: right shape, finite gradients everywhere
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3, 32, 32)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert _finite_grads(model)
    assert model.head.weight.grad.abs().sum() > 0

    # evaluation: same shape, deterministic
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)


def test_slots_are_made_in_stage_order(monkeypatch):
    calls = []

    class Tagged(Regularizer):
        def __init__(self, index):
            super().__init__()
            self.index = index

    def fake_factory(spec):
        def make_slot(index, total):
            calls.append((index, total))
            return Tagged(index)
        return make_slot, None

    monkeypatch.setattr(regularizers, "spec_to_factory", fake_factory)
    for name in MODELS:
        calls.clear()
        model = models.build(name, 1, 2, base_channels=2, depth=DEPTH)
        total = 2 * DEPTH + 1
        assert calls == [(i, total) for i in range(total)]
        # encoder top → bottleneck, then decoder bottom → top
        assert [blk.reg.index for blk in model.encoder] == list(range(DEPTH + 1))
        dec = [s.fuse.reg.index if hasattr(s, "fuse") else s.reg.index for s in model.decoder]
        assert dec == list(range(DEPTH + 1, total))
        if name != "unet3plus":
            widths = [blk.conv2.conv.out_channels for blk in model.decoder]
            assert widths == [2 * 2 ** i for i in range(DEPTH - 1, -1, -1)]
        else:
            assert [s.level for s in model.decoder] == list(range(DEPTH - 1, -1, -1))


@pytest.mark.parametrize("name", MODELS)
def test_non_square_input_and_size_check(name):
    model = models.build(name, 2, 4, base_channels=4, depth=DEPTH).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 64, 32)).shape == (1, 4, 64, 32)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        model(torch.randn(1, 2, 64, 36))


@pytest.mark.parametrize("name", MODELS)
def test_head_is_the_final_1x1_conv(name):
    model = models.build(name, 1, 3, base_channels=4, depth=2).eval()
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (1, 1)
    assert model.head.out_channels == 3
    # zeroing the head's input leaves only its bias (what the co-adaptation test does)
    handle = model.head.register_forward_pre_hook(lambda m, args: (torch.zeros_like(args[0]),))
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16, 16))
    handle.remove()
    assert torch.allclose(out, model.head.bias.view(1, 3, 1, 1).expand_as(out))


def test_input_regularizer_is_applied_to_the_network_input():
    model = models.build("unet", 1, 2, base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        ref = model(torch.zeros_like(x))
        model.input_regularizer = _Zero()
        assert torch.equal(model(x), ref)


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_attention_gate_on_every_skip():
    model = models.build("attention_unet", 1, 2, base_channels=4, depth=DEPTH)
    assert len(model.gates) == DEPTH
    assert all(isinstance(g, AttentionGate) for g in model.gates)
    assert sum(isinstance(m, AttentionGate) for m in model.modules()) == DEPTH
    seen = []
    hooks = [g.register_forward_hook(lambda m, args, out: seen.append((args[0].shape, args[1].shape, out.shape)))
             for g in model.gates]
    model(torch.randn(2, 1, 32, 16))
    for h in hooks:
        h.remove()
    # deepest skip first; the gate keeps the skip's shape; g is one level coarser
    expected = []
    for level in range(DEPTH - 1, -1, -1):
        c, s = 4 * 2 ** level, 2 ** level
        expected.append(((2, c, 32 // s, 16 // s), (2, 2 * c, 16 // s, 8 // s), (2, c, 32 // s, 16 // s)))
    assert seen == expected


def test_attention_gate_formula():
    gate = AttentionGate(skip_channels=3, gate_channels=5, inter_channels=2)
    x, g = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    with torch.no_grad():
        gate.psi.weight.zero_()
        gate.psi.bias.fill_(0.7)
        # ψ = 0 → α = σ(0.7) everywhere
        assert torch.allclose(gate(x, g), x * torch.sigmoid(torch.tensor(0.7)))
        gate.psi.weight.fill_(1.0)
        gate.psi.bias.zero_()
        q = torch.relu(gate.theta_x(x) + gate.phi_g(g)).sum(1, keepdim=True)
        alpha = nn.functional.interpolate(torch.sigmoid(q), size=(8, 8), mode="bilinear")
        assert torch.allclose(gate(x, g), x * alpha, atol=1e-6)
        assert ((alpha > 0) & (alpha < 1)).all()


def test_unet3plus_full_scale_widths():
    model = models.build("unet3plus", 1, 2, base_channels=4, depth=4, cat_channels=3)
    for stage in model.decoder:
        assert len(stage.branches) == 5
        assert stage.fuse.conv.conv.in_channels == stage.fuse.conv.conv.out_channels == 5 * 3
    assert model.head.in_channels == 15
    assert models.build("unet3plus", 1, 2, base_channels=6, depth=2).cat_channels == 6


def test_unet3plus_deep_supervision():
    model = models.build("unet3plus", 1, 3, base_channels=4, depth=DEPTH, deep_supervision=True)
    main_out = []
    model.head.register_forward_hook(lambda m, a, out: main_out.append(out))
    x = torch.randn(2, 1, 32, 16)
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == DEPTH + 1
    assert all(o.shape == (2, 3, 32, 16) for o in outs)
    assert outs[0] is main_out[-1]
    sum(o.mean() for o in outs).backward()
    assert all(h.weight.grad is not None for h in model.aux_heads)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 32, 16)
    # without deep supervision the training forward is a tensor too
    plain = models.build("unet3plus", 1, 3, base_channels=4, depth=DEPTH)
    assert plain.aux_heads is None and isinstance(plain(x), torch.Tensor)


def test_paper_size_parameter_counts():
    # UNet 3+ (Huang et al. 2020, Table 1): 26.97 M parameters at 64 base channels
    n = sum(p.numel() for p in models.build("unet3plus", 3, 1, base_channels=64).parameters())
    assert abs(n - 26.97e6) / 26.97e6 < 2e-3


def test_build_errors():
    with pytest.raises(ConfigError, match="unknown model 'vnet'.*unet, attention_unet, unet3plus"):
        models.build("vnet", 1, 2)
    with pytest.raises(ConfigError, match="model 'unet' has no option 'width'"):
        models.build("unet", 1, 2, width=3)
    with pytest.raises(ConfigError, match="model 'unet3plus' has no option 'gates'.*cat_channels"):
        models.build("unet3plus", 1, 2, gates=True)
    with pytest.raises(ConfigError, match="'deep_supervision' applies only to unet3plus"):
        models.build("unet", 1, 2, deep_supervision=True)
    # options of another architecture at their defaults are accepted (one config drives all)
    models.build("unet", 1, 2, base_channels=2, depth=1, deep_supervision=False, cat_channels=None)
    with pytest.raises(ConfigError, match="norm 'group'"):
        models.build("unet", 1, 2, norm="group")
    with pytest.raises(ConfigError, match=r"model base_channels must be an integer >= 1, got 0"):
        models.build("unet", 1, 2, base_channels=0)
    with pytest.raises(ConfigError, match="cat_channels"):
        models.build("unet3plus", 1, 2, cat_channels=0)
    with pytest.raises(ConfigError, match="unknown regularizer 'nope'"):
        models.build("unet", 1, 2, regularizer="nope")


@pytest.mark.parametrize("name,options", [("unet", {}), ("attention_unet", {}),
                                          ("unet3plus", {"deep_supervision": True})])
def test_foreground_prior_starts_every_head_at_the_prior(name, options):
    torch.manual_seed(1)
    net = models.build(name, 1, 2, base_channels=4, depth=3, **options)
    net.init_foreground_prior(0.01)
    net.train()
    x = torch.randn(2, 1, 32, 32)
    outputs = net(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    assert len(outputs) == len(net.heads()) == (1 if name != "unet3plus" else net.depth + 1)
    for logits in outputs:
        p = torch.softmax(logits, 1)[:, 1]
        assert (p - 0.01).abs().max() < 0.005, p.mean()  # weights N(0, 0.01²): near the prior everywhere
    with pytest.raises(ConfigError, match="foreground prior"):
        net.init_foreground_prior(1.0)
