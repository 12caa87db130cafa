"""Real data for calibration, training and verification, installed offline from packages (docs/architecture.md).

`load_data` returns disjoint splits; each source lives in its own module and registers itself in SOURCES.
"""

from __future__ import annotations

from edgekd.config.schema import DataConfig
from edgekd.context import Data, ModelBundle
from edgekd.errors import EdgekdError

from pathlib import Path

from . import fashion, files, images, text

SOURCES = {
    "photo_crops": images.photo_crops,
    "digits": images.digits,
    "fashion_mnist": fashion.fashion_mnist,
    "sentences": text.sentences,
    "rotten_tomatoes": text.rotten_tomatoes,
    "sms_spam": text.sms_spam,
}


def load_data(cfg: DataConfig, bundle: ModelBundle, key: str = "data.source", base_dir: Path | None = None) -> Data:
    """`base_dir`: the recipe's folder, where relative paths of images:, arrays: and lines: sources are found."""
    scheme, _, ref = cfg.source.partition(":")
    if scheme in files.SCHEMES:
        return files.load(cfg, bundle, base_dir)
    if scheme == "builtin" and ref in SOURCES:
        return SOURCES[ref](cfg, bundle)
    if scheme == "py":
        import importlib

        module_name, _, fn_name = ref.rpartition(":")
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise EdgekdError(f"cannot import data loader {ref!r}: {exc}", key=key) from exc
        data = fn(cfg, bundle)
        if not isinstance(data, Data):
            raise EdgekdError(f"{ref} returned {type(data).__name__}, expected edgekd.context.Data", key=key)
        return data
    raise EdgekdError("unknown data source", key=key, value=None,
                      hint=f"allowed: {', '.join('builtin:' + s for s in SOURCES)}, py:module:function, "
                           "images:FOLDER, arrays:FILE.npy|.npz, lines:FILE.txt")
