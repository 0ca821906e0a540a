"""`medseg data synth abdomen`: nnU-Net v2 raw layout, dataset.json, geometry, orientation,
labels, the two phases, determinism and the --force rules."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.cli import main
from medseg.data import abdomen_phantom, synth_abdomen
from medseg.errors import DataError, MedsegError

sa = importlib.import_module("medseg.data.synth_abdomen")  # the module, not the function

FOLDER = "Dataset901_SynthAbdomen"
CASES, TEST_CASES, SIZE, SLICES = 5, 2, 32, 8
SMALL = ["--cases", str(CASES), "--test-cases", str(TEST_CASES), "--size", str(SIZE), "--slices", str(SLICES)]


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("nnUNet_raw")
    assert main(["data", "synth", "abdomen", "--out", str(raw), *SMALL]) == 0
    return raw / FOLDER


@pytest.fixture(scope="module")
def phantoms() -> list:
    """The first six cases at the default size (tumour sizes, shares and phases need real voxels)."""
    return [abdomen_phantom(i) for i in range(6)]


def names(n: int, start: int = 0) -> list[str]:
    return [f"abdomen_{i + 1:03d}" for i in range(start, start + n)]


# ----------------------------------------------------------------------------- layout
def test_layout(dataset):
    files = lambda sub: sorted(p.name for p in (dataset / sub).iterdir())  # noqa: E731
    assert files("imagesTr") == sorted(f"{c}_{k:04d}.nii.gz" for c in names(CASES) for k in (0, 1))
    assert files("labelsTr") == [f"{c}.nii.gz" for c in names(CASES)]
    assert files("imagesTs") == sorted(f"{c}_{k:04d}.nii.gz" for c in names(TEST_CASES, CASES) for k in (0, 1))
    assert files("labelsTs") == [f"{c}.nii.gz" for c in names(TEST_CASES, CASES)]
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [".medseg", "medseg_synth.json", "dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs"])


def test_dataset_json(dataset):
    d = json.loads((dataset / "dataset.json").read_text())
    assert {"channel_names", "labels", "numTraining", "file_ending", "name", "description", "reference",
            "licence"} <= set(d)
    # nnU-Net picks CT normalisation by the exact (case-insensitive) name "CT": both phases get it
    assert d["channel_names"] == {"0": "CT", "1": "CT"}
    assert "non-contrast" in d["description"] and "contrast" in d["description"]
    assert d["labels"] == {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "tumour": 4}
    assert sorted(d["labels"].values()) == list(range(len(d["labels"])))   # consecutive from 0
    assert d["numTraining"] == CASES and d["file_ending"] == ".nii.gz"
    assert "synthetic" in d["licence"]


def test_cli_prints_the_dataset_folder(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "synth", "abdomen", "--out", str(tmp_path), "--cases", "1",
                       "--test-cases", "0", "--size", "16", "--slices", "4")
    assert code == 0
    assert str(tmp_path / FOLDER) in out and "1 training + 0 test cases of 16×16×4" in out
    assert not any((tmp_path / FOLDER / "imagesTs").iterdir())


def test_help_lists_abdomen(capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    assert "abdomen" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "synth", "abdomen", "--help"])
    out = capsys.readouterr().out
    for option in ("--out", "--cases", "--test-cases", "--size", "--slices", "--seed", "--force"):
        assert option in out


# ----------------------------------------------------------------------------- geometry and values
def all_cases(dataset: Path):
    for split, n, start in (("Tr", CASES, 0), ("Ts", TEST_CASES, CASES)):
        for index, case in enumerate(names(n, start), start):
            images = [sitk.ReadImage(str(dataset / f"images{split}" / f"{case}_{k:04d}.nii.gz")) for k in (0, 1)]
            label = sitk.ReadImage(str(dataset / f"labels{split}" / f"{case}.nii.gz"))
            yield index, images, label


def geometry(img) -> tuple:
    return img.GetSize(), img.GetOrigin(), img.GetSpacing(), img.GetDirection()


def test_channels_and_label_share_one_geometry(dataset):
    spacings = set()
    for _, images, label in all_cases(dataset):
        assert geometry(images[0]) == geometry(images[1]) == geometry(label)   # exactly, not within a tolerance
        assert images[0].GetPixelID() == images[1].GetPixelID() == sitk.sitkInt16
        assert label.GetPixelID() == sitk.sitkUInt8
        values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
        assert values <= {0, 1, 2, 3, 4} and 0 in values
        spacings.add(images[0].GetSpacing())
    assert len(spacings) == CASES + TEST_CASES   # spacing varies per case


def test_some_cases_stored_in_another_orientation(dataset):
    expected = {"LPS": (1, 0, 0, 0, 1, 0, 0, 0, 1), "RAS": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                "LPI": (1, 0, 0, 0, 1, 0, 0, 0, -1)}
    seen = set()
    for index, images, label in all_cases(dataset):
        orientation = sa.storage_orientation(index)
        seen.add(orientation)
        assert images[0].GetDirection() == expected[orientation]
        # stored = the generated case reoriented: back in LPS, arrays and geometry are the generated ones
        ph = abdomen_phantom(index, size=SIZE, slices=SLICES)
        back = [sitk.DICOMOrient(img, "LPS") for img in (*images, label)]
        for k in (0, 1):
            assert np.array_equal(sitk.GetArrayFromImage(back[k]), ph.hu[k])
        assert np.array_equal(sitk.GetArrayFromImage(back[2]), ph.label)
        assert np.allclose(back[2].GetOrigin(), ph.geometry.origin, atol=1e-4)
    assert seen == {"LPS", "RAS", "LPI"}


# ----------------------------------------------------------------------------- the phantom
def test_label_sizes_and_empty_slices(phantoms):
    shares = np.array([[np.mean(ph.label == v) for v in (1, 2, 3, 4)] for ph in phantoms])
    liver, kidney, spleen, tumour = shares.T
    assert (liver > 0.03).all() and (kidney > 0.003).all() and (spleen > 0.003).all()
    assert (liver > 3 * kidney).all() and (liver > 3 * spleen).all()
    with_tumour = [sa.has_tumour(ph.index) for ph in phantoms]
    assert any(with_tumour) and not all(with_tumour)
    assert ((tumour > 0) == with_tumour).all()               # present exactly where drawn
    assert tumour.max() < 0.005 and tumour[tumour > 0].min() > 0.0001   # small, but not a speck
    for ph in phantoms:
        per_slice = ph.label.reshape(ph.label.shape[0], -1).max(axis=1)
        assert (per_slice == 0).any() and (per_slice > 0).sum() > ph.label.shape[0] // 2
        assert ph.hu.dtype == np.int16 and ph.hu.shape == (2, 32, 96, 96)
        assert ph.hu.min() >= -1024
    spacing = np.array([ph.geometry.spacing for ph in phantoms])
    assert (spacing >= 2.7).all() and (spacing <= 3.5).all()


def test_tumour_lies_in_the_liver(phantoms):
    for ph in phantoms:
        tumour = ph.label == 4
        if tumour.any():
            ring = ndimage.binary_dilation(tumour) & ~tumour
            neighbours = ph.label[ring]
            assert np.isin(neighbours, (1, 4)).mean() > 0.8


def test_the_contrast_phase_carries_what_the_plain_one_lacks(phantoms):
    enhancement = {v: [] for v in (1, 2, 3, 4)}
    tumour_vs_liver = {0: [], 1: []}
    for ph in phantoms:
        plain, contrast = ph.hu.astype(np.float64)
        for v in enhancement:
            mask = ph.label == v
            if mask.any():
                enhancement[v].append(contrast[mask].mean() - plain[mask].mean())
        tumour = ph.label == 4
        if tumour.any():
            near = (ph.label == 1) & ndimage.binary_dilation(tumour, iterations=3)
            for k, img in ((0, plain), (1, contrast)):
                tumour_vs_liver[k].append(img[near].mean() - img[tumour].mean())
    mean = {v: np.mean(e) for v, e in enhancement.items()}
    assert mean[2] > 60 and mean[1] > 25 and mean[3] > 30     # kidney, liver, spleen enhance
    assert mean[4] < mean[1] - 20                              # the tumour barely does
    assert np.mean(tumour_vs_liver[1]) > 2 * np.mean(tumour_vs_liver[0]) + 10
    # fat does not enhance: outside the organs the phases agree far more closely
    ph = phantoms[0]
    fat = (ph.hu[0] < -60) & (ph.hu[0] > -200)
    assert abs(float(ph.hu[1][fat].astype(float).mean() - ph.hu[0][fat].astype(float).mean())) < 15


def test_noise_and_blur_vary_per_case(phantoms):
    # the spread of HU inside the liver (noise + texture) differs between cases
    sds = [float(ph.hu[0][ph.label == 1].std()) for ph in phantoms]
    assert max(sds) > 1.4 * min(sds)


def test_too_small_grids_are_refused():
    with pytest.raises(DataError, match="--size >= 16"):
        abdomen_phantom(0, size=8, slices=8)


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes(tmp_path):
    kw = dict(cases=2, test_cases=1, size=24, slices=6)
    a = tree_digest(synth_abdomen(tmp_path / "a", seed=3, **kw))
    b = tree_digest(synth_abdomen(tmp_path / "b", seed=3, **kw))
    c = tree_digest(synth_abdomen(tmp_path / "c", seed=4, **kw))
    assert a == b and len(a) > 8
    assert a["imagesTr/abdomen_001_0000.nii.gz"] != c["imagesTr/abdomen_001_0000.nii.gz"]
    # case i does not depend on how many cases are written
    d = tree_digest(synth_abdomen(tmp_path / "d", seed=3, cases=3, test_cases=0, size=24, slices=6))
    for name in ("imagesTr/abdomen_002_0001.nii.gz", "labelsTr/abdomen_002.nii.gz"):
        assert a[name] == d[name]
    assert a["imagesTs/abdomen_003_0000.nii.gz"] == d["imagesTr/abdomen_003_0000.nii.gz"]


def test_phantom_is_deterministic():
    a, b = abdomen_phantom(2, seed=7, size=32, slices=8), abdomen_phantom(2, seed=7, size=32, slices=8)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.label, b.label) and a.geometry == b.geometry
    assert not np.array_equal(a.hu, abdomen_phantom(2, seed=8, size=32, slices=8).hu)


# ----------------------------------------------------------------------------- existing folders, --force
def test_existing_dataset_needs_force(tmp_path, capsys):
    raw = tmp_path / "raw"
    tiny = ["--cases", "1", "--test-cases", "1", "--size", "16", "--slices", "4"]
    other = raw / "Dataset002_Other"
    other.mkdir(parents=True)
    (other / "dataset.json").write_text("{}")
    assert run(capsys, "data", "synth", "abdomen", "--out", str(raw), *tiny)[0] == 0   # beside another dataset
    code, out, err = run(capsys, "data", "synth", "abdomen", "--out", str(raw), *tiny, "--seed", "1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg: error: ") and "--force" in lines[0]
    assert str(raw / FOLDER) in lines[0]
    before = tree_digest(raw / FOLDER)
    code, _, _ = run(capsys, "data", "synth", "abdomen", "--out", str(raw), *tiny, "--seed", "1", "--force")
    assert code == 0
    after = tree_digest(raw / FOLDER)
    assert after != before and set(after) == set(before)
    assert (other / "dataset.json").read_text() == "{}"      # the other dataset is untouched
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset002_Other", FOLDER]   # no temporary folders left


def test_force_never_replaces_a_foreign_folder(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / FOLDER).mkdir(parents=True)
    (raw / FOLDER / "dataset.json").write_text('{"mine": true}')
    code, _, err = run(capsys, "data", "synth", "abdomen", "--out", str(raw), "--cases", "1", "--size", "16",
                       "--slices", "4", "--force")
    assert code == 2 and "refusing to replace" in err
    assert (raw / FOLDER / "dataset.json").read_text() == '{"mine": true}'


def test_force_refuses_strangers_in_an_earlier_output(tmp_path):
    kw = dict(cases=1, test_cases=0, size=16, slices=4)
    folder = synth_abdomen(tmp_path, **kw)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(MedsegError, match="notes.txt"):
        synth_abdomen(tmp_path, force=True, **kw)
    assert (folder / "notes.txt").read_text() == "mine"


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        synth_abdomen(tmp_path / "file", cases=1, size=16, slices=4)
    with pytest.raises(DataError, match="is a dataset folder"):             # the dataset folder itself
        synth_abdomen(synth_abdomen(tmp_path / "y", cases=1, size=16, slices=4), cases=1, size=16, slices=4,
                      force=True)
    with pytest.raises(DataError, match="--cases"):
        synth_abdomen(tmp_path / "x", cases=0, size=16, slices=4)
