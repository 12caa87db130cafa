"""Parity metrics between a reference and a candidate on the same inputs, chosen by task.

Classification: top-1/top-5 agreement with the reference, task accuracy where labels exist, cosine of logits,
max abs error. Embeddings: mean and worst cosine, max abs error. The "drop" is what the profile's accuracy_drop
budget limits: accuracy lost where labels exist, otherwise disagreement (1 - top-1 agreement, or 1 - mean cosine).
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION_TASKS = ("image-classification", "text-classification")


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


CONFIDENT_MARGIN = 0.1  # fp32's top-1 minus top-2 softmax probability for a sample to count as confident


def _confident(logits: np.ndarray) -> np.ndarray:
    z = logits.reshape(len(logits), -1).astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate([np.zeros_like(probs), probs], 1)
    return (top2[:, 1] - top2[:, 0]) >= CONFIDENT_MARGIN


def compare(task: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> dict:
    cos = _cosine(reference, candidate)
    result = {"samples": int(len(reference)), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
              "max_abs_error": float(np.abs(reference - candidate).max())}
    if task in CLASSIFICATION_TASKS:
        ref_top1, cand_top1 = reference.argmax(-1), candidate.argmax(-1)
        top5 = np.argsort(-reference, axis=-1)[:, :5]
        result["top1_agreement"] = float((ref_top1 == cand_top1).mean())
        confident = _confident(reference)
        result["confident_samples"] = int(confident.sum())
        if confident.any():
            # Where fp32 itself hesitates (top-2 probabilities within 0.1) any rounding picks a side: agreement on
            # the confident samples is the part that measures quantization error rather than tie-breaking.
            result["top1_agreement_confident"] = float((ref_top1 == cand_top1)[confident].mean())
        result["top5_contains_ref_top1"] = float(np.mean([c in t for c, t in zip(cand_top1, top5)]))
        if labels is not None:
            result["accuracy"] = float((cand_top1 == labels).mean())
            result["reference_accuracy"] = float((ref_top1 == labels).mean())
            result["drop"] = result["reference_accuracy"] - result["accuracy"]
            result["drop_basis"] = "accuracy on labelled held-out data"
        else:
            result["drop"] = 1.0 - result["top1_agreement"]
            result["drop_basis"] = "1 - top-1 agreement with fp32 (no labels)"
    else:
        result["drop"] = 1.0 - result["cosine_mean"]
        result["drop_basis"] = "1 - mean cosine with fp32"
    return result
