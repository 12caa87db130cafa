"""Checks verify runs on an int8 ONNX beyond its deployed session: the target ISA versus this host, Q/DQ executed as
written, and text models on each sentence at its own length.

onnxruntime's x86 int8 kernels differ by CPU (u8 x s8 pairs saturate in int16 without VNNI), so the same file can
compute differently here than on the target; executing the Q/DQ as written (runtime/sessions.py, exact=True) is what
the file means, whatever the host.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

# /proc/cpuinfo flags (x86) that run a Profile.isa's format with its own kernels
_ISA_FLAGS = {"avx512-vnni": {"avx512_vnni"}, "avx-vnni": {"avx_vnni", "avx512_vnni"}, "avx2": {"avx2"}}


@lru_cache(maxsize=1)
def host_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def host_runs_isa(isa: str) -> bool:
    """Whether this host executes `isa`'s int8 kernels (so its default session computes what the target does)."""
    if isa == "arm64":
        return platform.machine().lower() in ("arm64", "aarch64")
    return bool(_ISA_FLAGS.get(isa, set()) & host_flags())


def has_static_qdq(path: Path) -> bool:
    """A QDQ file (static activations): the one kind whose 'exact' execution differs from its fused kernels."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def dynamic_sequence(path: Path) -> bool:
    """True when every 2-D input of the ONNX has a symbolic axis 1 (sentences run at their own length)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = [list(i.type.tensor_type.shape.dim) for i in model.graph.input]
    two_d = [d for d in dims if len(d) == 2]
    return bool(two_d) and all(d[1].dim_param and not d[1].dim_value for d in two_d)


def real_length_samples(tokenizer, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (input_ids, attention_mask) per sentence, unpadded: what a CPU service feeds a dynamic-axes ONNX."""
    out = []
    for text in texts:
        enc = tokenizer(text, truncation=True, return_tensors="pt")
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def outputs(run, samples) -> np.ndarray:
    return np.concatenate([np.asarray(run(s)[0]).reshape(len(s[0]), -1) for s in samples])


def onnx_parity_extras(ctx, artifact, samples: list[tuple], reference: np.ndarray, labels) -> dict:
    """Parity of an onnxruntime artifact beyond the deployed session: {"exact_qdq": ..., "real_lengths": ...}.

    exact_qdq: Q/DQ executed as written, for a static-QDQ int8 file. real_lengths: a text model whose ONNX has a
    dynamic sequence axis, run on each held-out sentence unpadded against PyTorch at the same length.
    """
    from edgekd import parity
    from edgekd.runtime.sessions import exact_runner
    from edgekd.runtime import load_onnx

    extras: dict = {}
    task, path = ctx.model.task, artifact.path
    if artifact.precision != "fp32" and has_static_qdq(path):
        exact = parity.compare(task, reference, outputs(exact_runner(path), samples), labels)
        extras["exact_qdq"] = {k: exact[k] for k in ("cosine_mean", "cosine_min", "top1_agreement", "accuracy")
                               if k in exact}
    texts, tokenizer = ctx.data.eval.texts, ctx.model.meta.get("tokenizer")
    if texts and tokenizer is not None and dynamic_sequence(path):
        real = real_length_samples(tokenizer, list(texts))
        with torch.no_grad():
            ref = np.concatenate([ctx.reference(*s).detach().numpy().reshape(1, -1) for s in real])
        got = parity.compare(task, ref, outputs(load_onnx(path), real), labels)
        extras["real_lengths"] = {**{k: got[k] for k in ("samples", "cosine_mean", "cosine_min", "top1_agreement")
                                     if k in got},
                                  "mean_tokens": float(np.mean([s[0].shape[1] for s in real]))}
    return extras


def target_runner(path: Path, threads: int = 1):
    """What the target ISA's int8 kernels compute, on a host that lacks them: Q/DQ executed as written for a static
    QDQ file; for dynamic int8 (MatMulInteger), onnxruntime's non-saturating x64 kernels (session.x64quantprecision,
    measured here: the same embeddings as the VNNI kernels, cosine 0.99999)."""
    from edgekd.runtime.sessions import exact_runner, ort_session, session_runner

    if has_static_qdq(path):
        return exact_runner(path, threads)
    return session_runner(ort_session(path, threads, config={"session.x64quantprecision": "1"}))


def ort_parity(converted: torch.nn.Module, path: Path, samples: list[tuple], threads: int = 1) -> dict:
    """Cosine, top-1 agreement and max |diff| of the ONNX in onnxruntime against the converted PyTorch model, for the
    exact-semantics session (the parity number) and onnxruntime's default session (its CPU int8 kernels)."""
    from edgekd.runtime.sessions import ort_session

    with torch.no_grad():
        ref = np.concatenate([_first(converted(*s)).reshape(len(s[0]), -1) for s in samples])
    out = {}
    for label, session in (("exact", ort_session(path, threads, exact=True)), ("ort_default", ort_session(path, threads))):
        names = [i.name for i in session.get_inputs()]
        got = np.concatenate([session.run(None, {n: t.numpy() for n, t in zip(names, s)})[0].reshape(len(s[0]), -1)
                              for s in samples])
        out[label] = logits_agreement(got, ref)
    return out


def _first(value):
    if isinstance(value, (tuple, list)):
        value = value[0]
    return value.detach().float().numpy()


def logits_agreement(got: np.ndarray, ref: np.ndarray) -> dict:
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(got - ref).max()), "samples": int(len(ref))}
