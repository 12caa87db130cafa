"""Write a folder of real photographs as PNGs (the sample photos of scikit-image), for the README's worked example.

    python examples/make_images.py examples/images

Any folder of your own images works the same way: edgekd reads .png/.jpg/... in the folder and its subfolders.
"""

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "horse", "coins", "immunohistochemistry", "retina",
          "colorwheel", "moon", "page"]


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)(), dtype=None)
        image = image.astype(np.float32) if image.dtype == bool else image
        if image.dtype != np.uint8:
            image = (255 * (image - image.min()) / max(float(np.ptp(image)), 1e-9)).astype(np.uint8)
        image = Image.fromarray(image[..., :3] if image.ndim == 3 else image).convert("RGB")
        image.thumbnail((256, 256))
        image.save(out / f"{name}.png")
    print(f"{len(PHOTOS)} images in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/images")
