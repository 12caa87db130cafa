"""The user's own data: a folder of images, a .npy/.npz of model inputs, or a text file of sentences.

Samples are split by a seeded permutation: the first `eval_samples` verify, the next `calibration_samples` calibrate,
so the quantizer never sees what it is judged on. `check_source` is what `edgekd validate` runs: it refuses, without
loading a model, what `load` would refuse minutes later (a missing path, no images, arrays of the wrong rank).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.config.schema import DataConfig
from edgekd.context import Data, ModelBundle, Split
from edgekd.errors import EdgekdError

SCHEMES = ("images", "arrays", "lines")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
KEY = "data.source"


def resolve(ref: str, base_dir: Path | None) -> Path:
    path = Path(ref).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def image_files(folder: Path) -> list[Path]:
    """Images in the folder and its subfolders, in a stable order (sorted paths)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def check_source(cfg: DataConfig, base_dir: Path | None, input_shape: list[int] | None = None) -> list[tuple]:
    """Problems with a file data source as (file, key, message, allowed); empty for builtin:/py: sources."""
    scheme, _, ref = cfg.source.partition(":")
    if scheme not in SCHEMES:
        return []
    path = resolve(ref, base_dir)
    if not ref or not path.exists():
        return [(str(path), KEY, f"{scheme}: path not found", "")]
    if scheme == "images":
        if not path.is_dir():
            return [(str(path), KEY, "images: needs a folder", "")]
        if not image_files(path):
            return [(str(path), KEY, "no images in the folder", ", ".join(IMAGE_SUFFIXES))]
        if cfg.mean is not None and cfg.std is not None and len(cfg.mean) != len(cfg.std):
            return [(str(path), "data.std", f"{len(cfg.std)} values for {len(cfg.mean)} mean values", "")]
        return []
    if scheme == "lines":
        if not path.is_file() or not _lines(path):
            return [(str(path), KEY, "lines: needs a text file with one sentence per line", "")]
        return []
    try:
        arrays = _arrays(path)
    except EdgekdError as exc:
        return [(exc.file, exc.key, exc.message, exc.hint or "")]
    inputs = arrays["inputs"]
    if input_shape is not None and tuple(inputs.shape[1:]) not in (tuple(input_shape[1:]), tuple(input_shape)):
        return [(str(path), KEY, f"inputs have shape {list(inputs.shape)}; the model takes {input_shape}",
                 f"[N, {', '.join(map(str, input_shape[1:]))}]")]
    return []


def load(cfg: DataConfig, bundle: ModelBundle, base_dir: Path | None) -> Data:
    scheme, _, ref = cfg.source.partition(":")
    shape = list(bundle.example_inputs[0].shape)
    problems = check_source(cfg, base_dir, shape if scheme == "arrays" else None)
    if problems:
        file, key, message, allowed = problems[0]
        raise EdgekdError(message, file=file, key=key, hint=f"allowed: {allowed}" if allowed else "")
    path = resolve(ref, base_dir)
    labels = None
    if scheme == "images":
        samples, description = _images(path, cfg, shape), f"images in {path}"
    elif scheme == "lines":
        from .text import tokenize

        texts = _lines(path)
        samples, description = tokenize(bundle, texts, bundle.meta.get("seq_len", cfg.seq_len)), f"lines of {path}"
    else:
        arrays = _arrays(path)
        x = torch.from_numpy(np.ascontiguousarray(arrays["inputs"])).to(bundle.example_inputs[0].dtype)
        samples = [(t.reshape(shape),) for t in x]
        labels = torch.from_numpy(arrays["labels"].astype(np.int64)) if "labels" in arrays else None
        description = f"arrays in {path}"
    return _split(samples, labels, cfg, description, bundle)


def _split(samples: list, labels, cfg: DataConfig, what: str, bundle: ModelBundle) -> Data:
    """Disjoint eval and calibration sets; with too few samples for both, the eval set is the smaller share."""
    order = np.random.default_rng(cfg.seed).permutation(len(samples))
    n_eval = min(cfg.eval_samples, max(1, len(samples) // 2))
    n_cal = min(cfg.calibration_samples, max(1, len(samples) - n_eval))
    ev, ca = order[:n_eval], order[n_eval:n_eval + n_cal] if len(samples) > 1 else order[:1]
    texts = None

    def pick(idx, name):
        return Split([samples[i] for i in idx], labels=labels[idx] if labels is not None else None, texts=texts,
                     description=f"{len(idx)} {name} from {what}")

    return Data(calibration=pick(ca, "calibration samples"), eval=pick(ev, "held-out samples"), train=None,
                num_classes=int(labels.max()) + 1 if labels is not None else bundle.meta.get("num_classes"),
                source=what)


def _images(folder: Path, cfg: DataConfig, shape: list[int]) -> list[tuple[torch.Tensor]]:
    """Each image: short side resized to `resize`, centre crop to the model's H x W, 0..1, (x - mean) / std."""
    from PIL import Image

    if len(shape) != 4 or shape[1] not in (1, 3):
        raise EdgekdError(f"images: the model input is {shape}; images need [1, 1 or 3, H, W]", key=KEY)
    channels, height, width = shape[1], shape[2], shape[3]
    short = cfg.resize or min(height, width)
    mean = torch.tensor(cfg.mean or [0.0] * channels).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std or [1.0] * channels).view(1, -1, 1, 1)
    out = []
    for path in image_files(folder):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                scale = short / min(image.size)
                image = image.resize((max(width, round(image.size[0] * scale)),
                                      max(height, round(image.size[1] * scale))), Image.BILINEAR)
                left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
                array = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
        except OSError as exc:
            raise EdgekdError(f"cannot read the image: {exc}", file=str(path), key=KEY) from exc
        x = torch.from_numpy(array.reshape(height, width, channels).copy()).permute(2, 0, 1).unsqueeze(0).contiguous()
        out.append(((x - mean) / std,))
    return out


def _lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """{'inputs': N x ..., 'labels'?: N} from a .npy (inputs only) or a .npz (`inputs` or its first array)."""
    if path.suffix not in (".npy", ".npz"):
        raise EdgekdError("arrays: needs a .npy or .npz file", file=str(path), key=KEY, hint=".npy, .npz")
    try:
        if path.suffix == ".npy":
            arrays = {"inputs": np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if not names:
                    raise EdgekdError("the .npz holds no arrays", file=str(path), key=KEY)
                arrays = {"inputs": npz["inputs" if "inputs" in names else names[0]]}
                if "labels" in names:
                    arrays["labels"] = npz["labels"]
    except (OSError, ValueError) as exc:
        raise EdgekdError(f"cannot read the arrays: {exc}", file=str(path), key=KEY) from exc
    inputs = arrays["inputs"]
    if inputs.ndim < 2 or len(inputs) == 0 or inputs.dtype.kind not in "fiu":
        raise EdgekdError(f"inputs must be a numeric array [N, ...] with N >= 1, got {inputs.dtype} "
                          f"{list(inputs.shape)}", file=str(path), key=KEY)
    labels = arrays.get("labels")
    if labels is not None and (labels.shape != (len(inputs),) or labels.dtype.kind not in "iu"):
        raise EdgekdError(f"labels must be N={len(inputs)} integers, got {labels.dtype} {list(labels.shape)}",
                          file=str(path), key="data.source", hint="allowed: an integer array of shape [N]")
    return arrays
