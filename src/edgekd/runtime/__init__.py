"""Run an artifact in its real runtime from Python: the ExecuTorch runtime for .pte, onnxruntime for .onnx.

One loader per format, each returning a callable `run(inputs: tuple[np.ndarray | Tensor, ...]) -> list[np.ndarray]`.
verify and the local bench runner both use these, so what is verified is what is timed.
Heavy imports stay inside the functions (docs/architecture.md, rule 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgekd.errors import EdgekdError

Runner = Callable[[Sequence], list]


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def load_pte(path: Path, method: str = "forward") -> Runner:
    import torch
    from executorch.runtime import Runtime

    try:
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (LLM .pte files use these kernels)
    except Exception:  # noqa: BLE001 - optional kernels; a .pte that needs them fails loudly below
        pass
    import executorch.kernels.quantized  # noqa: F401  (embedding_byte: int8 embedding tables, quant/dynamic_text.py)

    from edgekd.report.noise import native_stderr_quiet

    try:
        with native_stderr_quiet():  # the threadpool's cpuinfo probe prints from C++ on the first load
            program = Runtime.get().load_program(Path(path))
            loaded = program.load_method(method)
    except Exception as exc:  # noqa: BLE001 - the runtime raises bare RuntimeErrors
        raise EdgekdError(f"the ExecuTorch runtime cannot load it: {exc}", file=str(path)) from exc

    def run(inputs: Sequence) -> list:
        # contiguous: the runtime reads a permuted tensor's strides as a channels-last dim order (wrong shapes)
        tensors = [x.contiguous() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
                   for x in inputs]
        return [_as_numpy(o) for o in loaded.execute(tensors)]

    return run


def load_onnx(path: Path, threads: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Runner:
    from edgekd.runtime.sessions import ort_session, session_runner

    return session_runner(ort_session(path, threads, providers=providers))


LOADERS = {"executorch": load_pte, "onnxruntime": load_onnx}


def load_artifact(path: Path, runtime: str) -> Runner:
    if runtime not in LOADERS:
        raise EdgekdError(f"no runtime here for {runtime!r} artifacts", file=str(path),
                          hint=f"runnable here: {', '.join(LOADERS)}")
    return LOADERS[runtime](Path(path))
