"""Teachers that are trained here from real data, for recipes whose dataset has no pretrained teacher on disk.

`digits_teacher` trains a wide DigitsCNN on exactly the train split the recipe's data section produces (pass the
same data block, e.g. with a YAML anchor), so the teacher never sees the calibration or evaluation samples.
The weights are cached under $EDGEKD_CACHE (default ~/.cache/edgekd) keyed by every setting that affects them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd.context import ModelBundle


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd"))


def train_classifier(module: torch.nn.Module, split, epochs: int, lr: float, seed: int, batch_size: int = 64) -> None:
    """Plain supervised training (CE on labels), used only to make a teacher."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(split) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    module.train()
    for epoch in range(epochs):
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = torch.cat([split.inputs[i][0] for i in idx])
            loss = F.cross_entropy(module(x), split.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    module.eval()


def digits_teacher(data: dict | None = None, width: int = 32, epochs: int = 30, lr: float = 3e-3,
                   seed: int = 0) -> ModelBundle:
    from edgekd.config.schema import DataConfig
    from edgekd.data.images import digits
    from edgekd.models.builtin import digits_cnn
    from edgekd.report.atomic import atomic_path

    data_cfg = DataConfig(**(data or {"source": "builtin:digits"}))
    bundle = digits_cnn(data_cfg, width=width, seed=seed)
    settings = {"data": data_cfg.model_dump(), "width": width, "epochs": epochs, "lr": lr, "seed": seed, "v": 1}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "teachers" / f"digits_cnn_w{width}_{key}.pt"
    if path.is_file():
        bundle.module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        split = digits(data_cfg, bundle).train
        train_classifier(bundle.module, split, epochs, lr, seed)
        with atomic_path(path) as tmp:
            torch.save(bundle.module.state_dict(), tmp)
    bundle.name = f"digits_teacher_w{width}"
    bundle.meta["source"] = f"DigitsCNN(width={width}) trained on the recipe's digits train split ({path.name})"
    bundle.module.eval()
    return bundle
