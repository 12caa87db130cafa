"""Per-operator time of a .pte from ETDump, recorded by the pip ExecuTorch runtime itself.

Inside an XNNPACK delegate the events are XNNPACK's own operators ("Convolution (NHWC, QC8) DWConv #3",
"Convert (NC) #7", "Constant Pad (ND, X32) #2"): what the phone executes, after XNNPACK fused what it fuses. Outside
a delegate they are the portable kernels; `DELEGATE_CALL` is one call into one partition. So the profile shows both
where the time goes and how the graph was cut (each partition costs a call and the layout and type conversions at
its borders).
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

INSTANCE = re.compile(r"\s*#\d+$")
SETUP_EVENTS = {"Method::init", "Program::load_method"}


@dataclass
class OpEvent:
    """One event of the executed plan: its name, position, p50 over the profiled runs (ms), delegated or not."""

    name: str
    index: int
    p50_ms: float
    delegated: bool

    @property
    def kind(self) -> str:
        """The operator without its instance number: "Convert (NC) #7" -> "Convert (NC)"."""
        return INSTANCE.sub("", self.name)


def profile_pte(path: Path, inputs: Sequence, runs: int = 10, threads: int = 0) -> list[OpEvent]:
    """Run `path` `runs` times on `inputs` with ETDump on; the events of one run, in execution order.

    `threads` > 0 sets the runtime's thread pool (as the bench does); 0 leaves it as it is.
    """
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401 - an LLM program's SDPA / KV-cache kernels
    import executorch.kernels.quantized  # noqa: F401 - quantized embedding kernels

    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    program = Runtime.get().load_program(Path(path), enable_etdump=True)
    method = program.load_method("forward")
    tensors = [x if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in inputs]
    for _ in range(runs):
        method.execute(tensors)
    with tempfile.TemporaryDirectory() as folder:
        etdump = Path(folder) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), None)
        inspector = Inspector(etdump_path=str(etdump))
    events = []
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None or event.name in SETUP_EVENTS:
                continue
            events.append(OpEvent(event.name, len(events), float(event.perf_data.p50), bool(event.is_delegated_op)))
    return events


SCALAR_TYPES = {6: "float32", 4: "int64", 3: "int32", 1: "int8", 0: "uint8", 11: "bool"}  # ExecuTorch ScalarType


def random_inputs(path: Path, seed: int = 0) -> list:
    """Inputs of the shapes and dtypes the .pte declares: normal floats, small non-negative integers."""
    import torch
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(Path(path)).metadata("forward")
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for i in range(meta.num_inputs()):
        info = meta.input_tensor_meta(i)
        dtype = getattr(torch, SCALAR_TYPES.get(info.dtype(), "float32"))
        shape = tuple(info.sizes())
        inputs.append(torch.randn(shape, generator=generator) if dtype.is_floating_point
                      else torch.randint(0, 2, shape, generator=generator, dtype=dtype))
    return inputs


def summarize(events: Sequence[OpEvent]) -> list[dict]:
    """Per operator kind: how many instances, total p50 (ms) and share of the delegated time; slowest first."""
    total = sum(e.p50_ms for e in events if e.delegated) or 1.0
    rows: dict[str, dict] = defaultdict(lambda: {"count": 0, "ms": 0.0, "delegated": False})
    for event in events:
        row = rows[event.kind]
        row["count"] += 1
        row["ms"] += event.p50_ms
        row["delegated"] = event.delegated
    table = [{"op": op, **row, "share": row["ms"] / total if row["delegated"] else None} for op, row in rows.items()]
    return sorted(table, key=lambda r: -r["ms"])


def partitions(events: Sequence[OpEvent]) -> int:
    """Delegate calls in one run: the number of partitions the graph was cut into."""
    return sum(1 for e in events if e.name == "DELEGATE_CALL")
