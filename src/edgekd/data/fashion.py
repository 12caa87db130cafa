"""Fashion-MNIST (Zalando, 28x28 grey images of 10 clothing classes) from Debian's `dataset-fashion-mnist`.

Why it is here: on sklearn's digits plain int8 PTQ of a small CNN is already lossless, so "QAT+KD is no worse than
PTQ" cannot be told apart from noise there. Fashion-MNIST is harder (a small CNN reaches ~90%) and its 10,000-image
test set resolves 0.01-point differences.

Splits never overlap: train and calibration come from the 60,000 training images (disjoint slices of one seeded
permutation); evaluation comes from the 10,000 test images, which no stage ever trains or calibrates on.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from edgekd.config.schema import DataConfig
from edgekd.context import Data, ModelBundle, Split
from edgekd.errors import EdgekdError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Mean and std of the training images' pixels (0..1), the usual normalisation for this data set.
MEAN, STD = 0.2860, 0.3530


def data_dir() -> Path:
    """$EDGEKD_FASHION_MNIST, else where the Debian package installs the idx files."""
    return Path(os.environ.get("EDGEKD_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def _idx(path: Path, magic: int) -> np.ndarray:
    """Read one gzipped IDX file (big-endian header: magic, then one uint32 per dimension, then uint8 data)."""
    if not path.is_file():
        raise EdgekdError("Fashion-MNIST is not installed", file=str(path), key="data.source",
                          hint="apt-get install dataset-fashion-mnist (make system-deps does it), "
                               "or point EDGEKD_FASHION_MNIST at a folder with the four idx .gz files")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise EdgekdError(f"corrupt Fashion-MNIST file: {exc}", file=str(path), key="data.source") from exc
    ndim = magic & 0xFF
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise EdgekdError(f"not an IDX file with magic {magic:#x} (found {int(header[0]):#x})", file=str(path),
                          key="data.source")
    shape = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise EdgekdError(f"truncated IDX file: {data.size} values for shape {shape}", file=str(path),
                          key="data.source")
    return data.reshape(shape)


def load_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N uint8) of the 'train' (60,000) or 't10k' (10,000) set."""
    folder = data_dir()
    images = _idx(folder / f"{split}-images-idx3-ubyte.gz", 0x00000803)
    labels = _idx(folder / f"{split}-labels-idx1-ubyte.gz", 0x00000801)
    if len(images) != len(labels):
        raise EdgekdError(f"{len(images)} images but {len(labels)} labels", file=str(folder), key="data.source")
    return images, labels


def fashion_mnist(cfg: DataConfig, bundle: ModelBundle) -> Data:
    """Labelled train / calibration / eval splits; `train_samples: 0` means every training image not calibrating."""
    train_images, train_labels = load_arrays("train")
    test_images, test_labels = load_arrays("t10k")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(train_labels))
    n_cal = min(cfg.calibration_samples, len(order) // 4)
    n_train = min(cfg.train_samples or len(order) - n_cal, len(order) - n_cal)
    cal_idx, train_idx = order[:n_cal], order[n_cal:n_cal + n_train]
    eval_idx = rng.permutation(len(test_labels))[:min(cfg.eval_samples, len(test_labels))]
    norm = bundle.meta.get("normalize") or {"mean": [0.0], "std": [1.0]}
    mean, std = float(norm["mean"][0]), float(norm["std"][0])

    def split(images, labels, idx, what):
        x = (torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1) - mean) / std
        return Split([(t.unsqueeze(0),) for t in x], labels=torch.from_numpy(labels[idx].astype(np.int64)),
                     description=what)

    return Data(calibration=split(train_images, train_labels, cal_idx, f"{n_cal} Fashion-MNIST training images"),
                eval=split(test_images, test_labels, eval_idx,
                           f"{len(eval_idx)} Fashion-MNIST test images (held out from training)"),
                train=split(train_images, train_labels, train_idx, f"{n_train} Fashion-MNIST training images"),
                num_classes=10, source=f"Fashion-MNIST, Debian dataset-fashion-mnist ({data_dir()})")
