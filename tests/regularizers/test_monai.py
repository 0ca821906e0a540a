"""The regularizers inside MONAI's networks through ``register_monai()``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from monai.networks.layers.factories import Dropout as DropoutFactory
from monai.networks.nets import BasicUNet, DynUNet

from medseg import regularizers
from medseg.regularizers import HeuristicDropout, register_monai

SLOT_KEYS = [k for k in regularizers.available()
             if regularizers.get(k).placement == "slot" and k != "dropout"]
TINY = (4, 4, 8, 8, 16, 4)  # BasicUNet features


@pytest.mark.slow
def test_import_registers_nothing():
    code = ("import medseg.regularizers\n"
            "from monai.networks.layers.factories import Dropout\n"
            "assert 'HEURISTIC' not in Dropout.names, Dropout.names\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_is_idempotent_and_leaves_monai_entries_alone():
    first = register_monai()
    names = DropoutFactory.names
    doc = DropoutFactory.__doc__
    assert register_monai() == first and DropoutFactory.names == names and DropoutFactory.__doc__ == doc
    assert first == SLOT_KEYS  # every slot regularizer, MONAI's own 'dropout' excepted
    assert DropoutFactory["dropout", 2] is torch.nn.Dropout2d
    for key in first:
        assert DropoutFactory[key, 1] is regularizers.get(key)
    for key in ("stochastic_depth", "cutout", "input_dropout"):  # not slot methods
        assert key.upper() not in names


def _count(net, cls=HeuristicDropout) -> int:
    return sum(isinstance(m, cls) for m in net.modules())


@pytest.mark.parametrize("key", SLOT_KEYS)
def test_every_registered_key_runs_inside_a_3d_basic_unet(key):
    register_monai()
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=TINY, dropout=(key, {}))
    assert _count(net, regularizers.get(key)) == 18  # two convs in each of 9 blocks
    y = net.train()(torch.randn(2, 1, 32, 32, 32))
    assert y.shape == (2, 2, 32, 32, 32) and torch.isfinite(y).all()


def _train(net, x, target, steps: int = 3) -> list[float]:
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = net(x)
        out = out[:, 0] if out.dim() == x.dim() + 1 else out  # DynUNet deep supervision off
        loss = torch.nn.functional.cross_entropy(out, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _replaced_planes(net, x) -> int:
    """Planes changed by the Heuristic Dropout modules in one training forward."""
    changed = []

    def hook(module, args, out):
        changed.append(int((args[0] != out).flatten(2).any(dim=2).sum()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, HeuristicDropout)]
    with torch.no_grad():
        net.train()(x)
    for h in handles:
        h.remove()
    return sum(changed)


HD = ("heuristic", {"rate": 0.25, "k": 2.0})


@pytest.mark.slow
@pytest.mark.parametrize("dims", [2, 3])
def test_basic_unet_trains_with_heuristic_dropout(dims):
    register_monai()
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=dims, in_channels=1, out_channels=2, features=TINY, dropout=HD)
    assert _count(net) == 18
    size = (32,) * dims
    x = torch.randn(2, 1, *size)
    target = (x[:, 0] > 0.5).long()
    before = [p.detach().clone() for p in net.parameters()]
    losses = _train(net, x, target)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert _replaced_planes(net, x) > 0


@pytest.mark.slow
def test_dyn_unet_3d_trains_with_heuristic_dropout():
    register_monai()
    torch.manual_seed(0)
    net = DynUNet(spatial_dims=3, in_channels=1, out_channels=2, kernel_size=[3, 3, 3],
                  strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[8, 16, 32],
                  norm_name="instance", dropout=HD)
    # after every conv: 2 in each of the input, down, bottleneck and 2 up blocks, the 2
    # transposed up-convs, and the 1×1 output head
    names = [n for n, m in net.named_modules() if isinstance(m, HeuristicDropout)]
    assert len(names) == 13 and "output_block.conv.adn.D" in names
    x = torch.randn(2, 1, 16, 16, 16)
    target = (x[:, 0] > 0.5).long()
    losses = _train(net, x, target)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert _replaced_planes(net, x) > 0
