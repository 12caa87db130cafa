"""Parity metrics (edgekd/parity.py): agreement on confident samples is reported apart from near-ties."""

from __future__ import annotations

import numpy as np

from edgekd import parity


def test_confident_agreement_leaves_out_samples_fp32_itself_hesitates_on():
    reference = np.array([[5.0, 0.0, 0.0],    # confident: class 0
                          [1.0, 0.99, 0.0],   # near-tie between 0 and 1 (top-2 probability gap < 0.1)
                          [0.0, 4.0, 0.0]])   # confident: class 1
    candidate = np.array([[4.0, 0.0, 0.0],    # agrees
                          [0.99, 1.0, 0.0],   # flips the near-tie
                          [0.0, 0.0, 3.0]])   # really disagrees
    result = parity.compare("image-classification", reference, candidate)
    assert result["top1_agreement"] == 1 / 3
    assert result["confident_samples"] == 2
    assert result["top1_agreement_confident"] == 0.5
