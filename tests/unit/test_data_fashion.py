"""Fashion-MNIST from Debian's dataset-fashion-mnist: real files, disjoint splits, clear errors for bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from edgekd.config.schema import DataConfig
from edgekd.data import fashion, load_data
from edgekd.errors import EdgekdError
from edgekd.models.builtin import fashion_cnn

installed = pytest.mark.skipif(not (fashion.data_dir() / "t10k-labels-idx1-ubyte.gz").is_file(),
                               reason="dataset-fashion-mnist not installed (make system-deps)")


@installed
def test_real_splits_are_disjoint_labelled_and_normalised():
    cfg = DataConfig(source="builtin:fashion_mnist", train_samples=500, calibration_samples=64, eval_samples=300)
    bundle = fashion_cnn(cfg)
    data = load_data(cfg, bundle)
    assert (len(data.train), len(data.calibration), len(data.eval)) == (500, 64, 300)
    assert data.eval.inputs[0][0].shape == (1, 1, 28, 28) == bundle.example_inputs[0].shape
    # train and calibration are disjoint slices of the 60,000 training images; eval comes from the test set
    train = torch.cat([s[0] for s in data.train.inputs]).flatten(1)
    cal = torch.cat([s[0] for s in data.calibration.inputs]).flatten(1)
    assert not (torch.cdist(cal, train).min(dim=1).values < 1e-6).any()
    assert sorted(set(data.eval.labels.tolist())) == list(range(10))
    pixels = torch.cat([s[0] for s in data.train.inputs])
    assert abs(float(pixels.mean())) < 0.1 and abs(float(pixels.std()) - 1.0) < 0.1  # the dataset's mean/std
    images, labels = fashion.load_arrays("t10k")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


@installed
def test_the_same_seed_gives_the_same_splits():
    cfg = DataConfig(source="builtin:fashion_mnist", train_samples=50, calibration_samples=8, eval_samples=20)
    a, b = (load_data(cfg, fashion_cnn(cfg)) for _ in range(2))
    assert torch.equal(a.eval.labels, b.eval.labels) and torch.equal(a.train.inputs[7][0], b.train.inputs[7][0])


def test_missing_folder_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_FASHION_MNIST", str(tmp_path / "nowhere"))
    cfg = DataConfig(source="builtin:fashion_mnist")
    with pytest.raises(EdgekdError) as err:
        load_data(cfg, fashion_cnn(cfg))
    assert "nowhere" in str(err.value.file) and "dataset-fashion-mnist" in err.value.hint


def _write_idx(path, magic: int, array: np.ndarray, cut: int = 0) -> None:
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw[:len(raw) - cut] if cut else raw))


@pytest.mark.parametrize("damage", ["truncated", "wrong magic", "not gzip"])
def test_corrupt_files_are_rejected_with_the_file_named(tmp_path, monkeypatch, damage):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", 0x803, rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", 0x801, rng.integers(0, 10, n))
    broken = tmp_path / "t10k-images-idx3-ubyte.gz"
    if damage == "truncated":
        _write_idx(broken, 0x803, rng.integers(0, 255, (20, 28, 28)), cut=100)
    elif damage == "wrong magic":
        _write_idx(broken, 0x801, rng.integers(0, 255, (20, 28, 28)))
    else:
        broken.write_bytes(b"<html>not the data</html>")
    monkeypatch.setenv("EDGEKD_FASHION_MNIST", str(tmp_path))
    cfg = DataConfig(source="builtin:fashion_mnist", calibration_samples=4, eval_samples=10)
    with pytest.raises(EdgekdError) as err:
        load_data(cfg, fashion_cnn(cfg))
    assert err.value.file == str(broken)


def test_intact_synthetic_files_load(tmp_path, monkeypatch):
    """The reader itself, independent of the Debian package: shapes and label values round-trip."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 30)
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", 0x803, rng.integers(0, 255, (30, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", 0x801, labels)
    monkeypatch.setenv("EDGEKD_FASHION_MNIST", str(tmp_path))
    images, got = fashion.load_arrays("t10k")
    assert images.shape == (30, 28, 28) and got.tolist() == labels.tolist()
