"""Every onnxruntime session edgekd opens, built here (the bench measure script, copied to boards, keeps its own).

Two kinds matter for verdicts: onnxruntime's default session (all graph optimizations: QLinear fusion and, on x86,
s8 -> u8 conversion, whose int8 kernels saturate int16 sums without VNNI) and the exact session (optimizations BASIC:
Q/DQ executed as written, what TensorRT and ARM targets compute; docs/architecture.md, "The stack").
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgekd.errors import EdgekdError

Runner = Callable[[Sequence], list]


def ort_session(path: Path | bytes, threads: int = 0, *, exact: bool = False, config: dict[str, str] | None = None,
                providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An onnxruntime InferenceSession of a file (or of a serialized model: the graph checks of export/ort_graph.py);
    `threads` 0 lets onnxruntime choose; `exact` keeps Q/DQ as written; `config` holds session config entries (e.g.
    session.x64quantprecision)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    try:
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, sess_options=options, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        where = "<serialized model>" if isinstance(path, bytes) else str(path)
        raise EdgekdError(f"onnxruntime cannot load it: {exc}", file=where) from exc


def session_runner(session) -> Runner:
    """A runtime.LOADERS-style callable over a session: positional inputs (tensors or arrays) in the graph's order."""
    names = [i.name for i in session.get_inputs()]

    def run(inputs: Sequence) -> list:
        feed = {n: (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)) for n, x in zip(names, inputs)}
        return session.run(None, feed)

    return run


def exact_runner(path: Path, threads: int = 1) -> Runner:
    """What verify runs a target-bound Q/DQ ONNX with: TensorRT and ARM int8 math accumulates in int32, not in
    onnxruntime's saturating x86 u8 x s8 kernels."""
    return session_runner(ort_session(path, threads, exact=True))
