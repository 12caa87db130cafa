"""Image data: crops of real photographs (scikit-image and scikit-learn samples) and sklearn's handwritten digits.

Photo crops: ImageNet models have no labelled images offline, so verification compares top-1 against the fp32
student on crops of real photographs; calibration and evaluation crops come from disjoint photos so the quantizer
never sees what it is judged on.

Evaluation uses photos of objects in ImageNet's label space (a cat, a camera, a cup of coffee, a rocket, a
motorcycle, ...). Textures, micrographs and star fields (brick, gravel, cells, the Hubble deep field) have no
ImageNet class: the fp32 model spreads them over many near-tied classes (median top-1 probability ~0.05-0.15), so
top-1 agreement there measures tie-breaking noise rather than quantization error. They still calibrate: their
activation ranges are real and widen the observers as deployment images would.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.config.schema import DataConfig
from edgekd.context import Data, ModelBundle, Split
from edgekd.errors import EdgekdError

# Colour and greyscale photos that ship inside scikit-image (no download) and scikit-learn.
SKIMAGE_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                  "colorwheel", "camera", "moon", "horse", "brick", "grass", "gravel", "cell", "coins", "page", "text",
                  "logo", "stereo_motorcycle"]
# Photos of ImageNet-like objects, held out for evaluation (disjoint from calibration by photo).
EVAL_PHOTOS = ["astronaut", "camera", "coffee", "rocket", "stereo_motorcycle", "china.jpg", "flower.jpg"]


def load_photos() -> list[tuple[str, np.ndarray]]:
    """All available photos as (name, HxWx3 uint8); names are stable so splits are reproducible."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skimage.data, name)()
            if isinstance(image, tuple):  # stereo pairs: the left view
                image = image[0]
        except Exception:  # noqa: BLE001 - a photo needing a download is simply not used
            continue
        photos.append((name, _rgb(image)))
    sample = load_sample_images()
    for fname, image in zip(sample.filenames, sample.images):
        photos.append((fname.rsplit("/", 1)[-1], _rgb(image)))
    return photos


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        image = (255 * (image - image.min()) / max(float(np.ptp(image)), 1e-9)).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def random_crops(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """Random square crops covering 25-100% of the short side, resized to `size` (0..255 floats, NCHW)."""
    height, width = photo.shape[:2]
    tensor = torch.from_numpy(np.ascontiguousarray(photo).copy()).permute(2, 0, 1).float().unsqueeze(0)
    crops = []
    for _ in range(count):
        side = int(min(height, width) * rng.uniform(0.5, 1.0))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = tensor[:, :, top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crops.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                                     antialias=True))
    return crops


def _normalize(x: torch.Tensor, bundle: ModelBundle) -> torch.Tensor:
    norm = bundle.meta.get("normalize")
    if not norm:
        return x / 255.0
    mean = torch.tensor(norm["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(norm["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


def photo_crops(cfg: DataConfig, bundle: ModelBundle) -> Data:
    photos = load_photos()
    if len(photos) < 4:
        raise EdgekdError("too few sample photos found (scikit-image / scikit-learn data missing)", key="data.source")
    rng = np.random.default_rng(cfg.seed)
    # Object photos evaluate, all others calibrate: disjoint by photo, not only by crop (see the module docstring).
    calib_photos = [(n, p) for n, p in photos if n not in EVAL_PHOTOS]
    eval_photos = [(n, p) for n, p in photos if n in EVAL_PHOTOS]
    size = bundle.meta.get("image_size", cfg.image_size)

    def crops_from(group, total):
        per = -(-total // len(group))
        out = [c for _, p in group for c in random_crops(p, per, size, rng)]
        order = rng.permutation(len(out))[:total]
        return [(_normalize(out[i], bundle),) for i in order]

    return Data(
        calibration=Split(crops_from(calib_photos, cfg.calibration_samples),
                          description=f"crops of {', '.join(n for n, _ in calib_photos)}"),
        eval=Split(crops_from(eval_photos, cfg.eval_samples),
                   description=f"crops of {', '.join(n for n, _ in eval_photos)}"),
        train=Split(crops_from(calib_photos, cfg.train_samples)) if cfg.train_samples else None,
        num_classes=bundle.meta.get("num_classes"), source="scikit-image + scikit-learn sample photos (real, unlabelled)",
    )


def digits(cfg: DataConfig, bundle: ModelBundle) -> Data:
    """sklearn's 1,797 real 8x8 handwritten digits with labels, split train / calibration / eval without overlap."""
    from sklearn.datasets import load_digits

    loaded = load_digits()
    images = torch.tensor(loaded.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(loaded.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(len(labels)))
    # Pixel values are 0..16; a model may declare its own normalisation, the default maps them to 0..1.
    scaled = _normalize(images[order], bundle) if bundle.meta.get("normalize") else images[order] / 16.0
    images, labels = scaled, labels[order]
    n_eval = min(cfg.eval_samples, len(labels) // 4)
    n_cal = min(cfg.calibration_samples, len(labels) // 4)
    n_train = cfg.train_samples or (len(labels) - n_eval - n_cal)
    ev, ca, tr = slice(0, n_eval), slice(n_eval, n_eval + n_cal), slice(n_eval + n_cal, n_eval + n_cal + n_train)

    def split(s, what):
        return Split([(x.unsqueeze(0),) for x in images[s]], labels=labels[s], description=what)

    return Data(calibration=split(ca, "digits calibration"), eval=split(ev, "digits held-out"),
                train=split(tr, "digits train"), num_classes=10, source="scikit-learn load_digits (real, labelled)")
