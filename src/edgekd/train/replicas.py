"""Training that gives the same weights again: on a rerun (seed, deterministic kernels, fixed threads) and on every
DDP rank (rank 0's buffers, checked by checksum). Used by the KD trainer, src/edgekd/train/loop.py; the fixed thread
count also by calibration, src/edgekd/stages/ptq.py."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def fixed_threads(threads: int | None):
    """torch's intra-op thread count set to `threads` (None: left as it is) inside, the caller's restored after. How
    a CPU reduction is split across threads changes its float rounding, so results that must repeat bit for bit
    across hosts with different core counts (trained weights, calibrated ranges) are computed at a fixed count."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextmanager
def reproducible(seed: int, threads: int | None):
    """Seeded, deterministic kernels, a fixed intra-op thread count for the duration of training; the caller's
    settings are restored after. The thread count fixes how CPU reductions are split, which changes float rounding;
    the same host, settings and count give bit-identical weights (tests/unit/test_train_determinism.py)."""
    previous_mode = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        with fixed_threads(threads) as count:
            yield count
    finally:
        torch.use_deterministic_algorithms(previous_mode, warn_only=previous_warn)


def ranks_agree(student: nn.Module, rank: int, world: int) -> str:
    """DDP keeps the parameters identical by construction; check it (a rank that diverged would train on weights
    other than the ones exported) by comparing every rank's checksum of parameters and buffers, after the buffers
    are taken from rank 0. Raises InternalError when they differ."""
    import hashlib

    import torch.distributed as dist

    from edgekd.errors import InternalError

    # DDP broadcasts buffers (BatchNorm statistics, QAT observer ranges) from rank 0 at the start of each forward;
    # the last forward then updates each rank's copy from its own batch. Rank 0's are the ones exported: take them.
    for buffer in student.buffers():
        dist.broadcast(buffer.data, src=0)
    digest = hashlib.sha256()
    for key, value in sorted(student.state_dict().items()):
        if isinstance(value, torch.Tensor):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    gathered: list = [None] * world
    dist.all_gather_object(gathered, digest.hexdigest())
    if len(set(gathered)) != 1:
        raise InternalError(f"DDP replicas diverged after training: weight checksums {gathered}")
    return f"DDP on {world} ranks: every rank ends with the same weights (sha256 {gathered[0][:16]})"
