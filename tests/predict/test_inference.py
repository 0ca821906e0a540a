"""The Predictor: ensembles, test-time mirroring and Monte Carlo sampling (tiny untrained networks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import read_ct_volume
from medseg.errors import CheckpointError, MedsegError
from medseg.predict import Predictor


@pytest.fixture(scope="module")
def hu(ct_series) -> np.ndarray:
    return read_ct_volume(ct_series)[0]


def test_ensemble_of_one_is_the_single_checkpoint(tiny_ckpts, hu):
    """One member, no TTA: the evaluation path's mask (predict_slices) and its softmax probability."""
    from medseg.data.preprocess import as_cached, predict_slices, preprocess_ct

    p = Predictor([tiny_ckpts["ct0"]], device="cpu")
    pred = p.predict_ct(hu)
    model = p.members[0].model
    x = as_cached(preprocess_ct(hu, p.preprocessing["window"], p.preprocessing["size"]))
    np.testing.assert_array_equal(pred.mask, predict_slices(model, x, hu.shape[-2:], 8).numpy())
    with torch.no_grad():
        probs = torch.nn.functional.interpolate(torch.softmax(model(x), 1), size=hu.shape[-2:],
                                                mode="bilinear", align_corners=False)
    np.testing.assert_allclose(pred.probability, probs[:, 1].numpy(), rtol=0, atol=1e-6)
    assert pred.passes == 1 and pred.variance is None
    assert pred.mask.shape == hu.shape and pred.mask.dtype == np.uint8
    assert np.ptp(pred.probability) > 1e-3  # an arbitrary but not constant output


def test_ensemble_probability_is_the_mean_of_the_members(tiny_ckpts, hu):
    names = ["ct0", "ct1", "ct2"]
    singles = [Predictor(tiny_ckpts[n], device="cpu").predict_ct(hu) for n in names]
    ens = Predictor([tiny_ckpts[n] for n in names], device="cpu").predict_ct(hu)
    probs = np.stack([s.probability for s in singles])
    assert not np.allclose(probs[0], probs[1], atol=1e-3)  # the members differ
    np.testing.assert_allclose(ens.probability, probs.mean(0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ens.variance, probs.var(0), rtol=0, atol=1e-6)
    assert ens.passes == 3
    # the mask is the arg-max of the mean, the entropy that of the mean (nats)
    clear = np.abs(ens.probability - 0.5) > 1e-6
    np.testing.assert_array_equal(ens.mask[clear], (ens.probability[clear] > 0.5).astype(np.uint8))
    p = ens.probability.astype(np.float64)
    entropy = -(p * np.log(np.clip(p, 1e-30, 1)) + (1 - p) * np.log(np.clip(1 - p, 1e-30, 1)))
    np.testing.assert_allclose(ens.entropy, entropy, rtol=0, atol=1e-5)


def test_members_must_share_preprocessing(tiny_ckpts):
    with pytest.raises(CheckpointError) as exc:
        Predictor([tiny_ckpts["ct0"], tiny_ckpts["ct48"]], device="cpu")
    msg = str(exc.value)
    assert str(tiny_ckpts["ct0"]) in msg and str(tiny_ckpts["ct48"]) in msg and "[48, 48]" in msg
    with pytest.raises(CheckpointError, match="share dataset"):
        Predictor([tiny_ckpts["ct0"], tiny_ckpts["bagls"]], device="cpu")


def _symmetrised(path, out):
    """The checkpoint with every conv kernel made mirror-symmetric in x and y."""
    ckpt = torch.load(path, weights_only=True)
    for k, w in ckpt["state_dict"].items():
        if w.ndim == 4:
            ckpt["state_dict"][k] = (w + w.flip(-1) + w.flip(-2) + w.flip(-2, -1)) / 4
    torch.save(ckpt, out)
    return out


def test_tta_of_a_mirror_symmetric_network_equals_no_tta(tiny_ckpts, hu, tmp_path):
    sym = _symmetrised(tiny_ckpts["mirror_xy"], tmp_path / "sym.ckpt")
    plain = Predictor(sym, device="cpu").predict_ct(hu)
    tta = Predictor(sym, device="cpu", tta=True).predict_ct(hu)
    assert tta.passes == 4
    np.testing.assert_allclose(tta.probability, plain.probability, rtol=0, atol=1e-5)
    assert np.abs(tta.variance).max() < 1e-6
    # control: an ordinary network is not mirror-symmetric, so TTA changes its output
    other = Predictor(tiny_ckpts["ct0"], device="cpu", tta=True).predict_ct(hu)
    base = Predictor(tiny_ckpts["ct0"], device="cpu").predict_ct(hu)
    assert np.abs(other.probability - base.probability).max() > 1e-4


def _mirrored_mean(model, x, dims_list, native_hw):
    """The mean softmax foreground probability of ``model`` over the given mirrorings, by hand."""
    with torch.no_grad():
        probs = [torch.softmax(model(x.flip(d) if d else x), 1) for d in dims_list]
        probs = [p.flip(d) if d else p for p, d in zip(probs, dims_list)]
        mean = torch.stack(probs).mean(0)
    return torch.nn.functional.interpolate(mean, size=native_hw, mode="bilinear",
                                           align_corners=False)[:, 1].numpy()


@pytest.mark.parametrize("name, dims_list", [
    ("ct0", [(), (-1,)]),                              # the default: training mirrored x only
    ("mirror_xy", [(), (-1,), (-2,), (-2, -1)]),       # data.mirror_axes: [x, y]
])
def test_tta_mirrors_exactly_the_axes_training_mirrored(tiny_ckpts, hu, name, dims_list):
    """--tta averages the identity and the mirrorings along the checkpoint's mirror_axes, no others."""
    from medseg.data.preprocess import as_cached, preprocess_ct

    p = Predictor(tiny_ckpts[name], device="cpu", tta=True)
    pred = p.predict_ct(hu)
    assert pred.passes == len(dims_list) == p.passes
    x = as_cached(preprocess_ct(hu, p.preprocessing["window"], p.preprocessing["size"]))
    expected = _mirrored_mean(p.members[0].model, x, dims_list, hu.shape[-2:])
    np.testing.assert_allclose(pred.probability, expected, rtol=0, atol=1e-5)
    # control: all four mirrorings give another answer for a network trained on x only
    if name == "ct0":
        four = _mirrored_mean(p.members[0].model, x, [(), (-1,), (-2,), (-2, -1)], hu.shape[-2:])
        assert np.abs(four - pred.probability).max() > 1e-4


def test_tta_is_refused_for_a_network_trained_without_mirroring(tiny_ckpts):
    with pytest.raises(MedsegError) as exc:
        Predictor(tiny_ckpts["no_mirror"], device="cpu", tta=True)
    msg = str(exc.value)
    assert msg.startswith("--tta: ") and str(tiny_ckpts["no_mirror"]) in msg and "\n" not in msg
    assert Predictor(tiny_ckpts["no_mirror"], device="cpu").passes == 1  # without --tta: fine


def test_checkpoint_records_the_mirror_axes(tiny_ckpts):
    from medseg.training.checkpoint import load_checkpoint

    assert load_checkpoint(tiny_ckpts["ct0"])["medseg"]["mirror_axes"] == ["x"]
    assert load_checkpoint(tiny_ckpts["mirror_xy"])["medseg"]["mirror_axes"] == ["x", "y"]
    assert load_checkpoint(tiny_ckpts["no_mirror"])["medseg"]["mirror_axes"] == []


def test_checkpoint_without_mirror_axes_is_read_as_trained_on_x(tiny_ckpts, tmp_path):
    """Checkpoints written before mirror_axes was recorded: medseg always mirrored x."""
    ckpt = torch.load(tiny_ckpts["ct0"], weights_only=True)
    del ckpt["medseg"]["mirror_axes"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert Predictor(tmp_path / "old.ckpt", device="cpu", tta=True).members[0].mirror_axes == ["x"]
    ckpt["medseg"]["config"]["data"]["augment"] = False
    torch.save(ckpt, tmp_path / "old_noaug.ckpt")
    with pytest.raises(MedsegError, match="without mirroring"):
        Predictor(tmp_path / "old_noaug.ckpt", device="cpu", tta=True)


def test_mc_samples_are_seeded_and_keep_batchnorm_in_eval(tiny_ckpts, hu):
    p = Predictor(tiny_ckpts["dropout"], device="cpu", mc_samples=4, seed=3)
    model = p.members[0].model
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    seen_modes = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen_modes.append(mod.training))
             for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    a = p.predict_ct(hu)
    for h in hooks:
        h.remove()
    assert seen_modes and not any(seen_modes)  # BatchNorm ran in evaluation mode throughout
    for k, v in model.state_dict().items():
        if k in stats:
            torch.testing.assert_close(v, stats[k], rtol=0, atol=0)
    assert a.passes == 4 and a.variance.max() > 0  # the dropout slots did sample
    b = p.predict_ct(hu)
    np.testing.assert_array_equal(a.probability, b.probability)  # same seed: same samples
    c = Predictor(tiny_ckpts["dropout"], device="cpu", mc_samples=4, seed=4).predict_ct(hu)
    assert np.abs(c.probability - a.probability).max() > 1e-4
    # back in evaluation mode afterwards: a plain prediction is deterministic
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("name, method", [("ct0", "none"), ("heuristic", "heuristic")])
def test_mc_samples_refused_for_deterministic_methods(tiny_ckpts, name, method):
    with pytest.raises(MedsegError) as exc:
        Predictor(tiny_ckpts[name], device="cpu", mc_samples=2)
    assert f"'{method}'" in str(exc.value) and "deterministic" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_predictor_is_loaded_once_and_reused(tiny_ckpts, hu, monkeypatch):
    import medseg.training.checkpoint as ck

    p = Predictor([tiny_ckpts["ct0"], tiny_ckpts["ct1"]], device="cpu")
    calls = []
    monkeypatch.setattr(ck, "build_model_from_checkpoint", lambda *a: calls.append(a))
    first, second = p.predict_ct(hu), p.predict_ct(hu[:5])
    assert calls == []
    np.testing.assert_array_equal(first.mask[:5], second.mask)
