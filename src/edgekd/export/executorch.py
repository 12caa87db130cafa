"""ExecuTorch export: torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> .pte, written atomically.

Delegation is recorded per op type (house rule 6): every op left outside the XNNPACK delegate is listed, since on a
phone each of them runs on the portable CPU kernels and can dominate latency.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from edgekd.errors import EdgekdError
from edgekd.report.atomic import write_bytes


def partitioners(mixed: bool) -> list:
    """One XNNPACK partitioner, or for mixed precision a quantized pass then an fp32 pass.

    A layer the plan keeps in fp32 often reads a tensor its int8 neighbour quantized (dq -> fp32 conv). The single
    all-precision partitioner fuses that dq into the conv and then fails ("Weight and Input should both be
    quantized"); partitioning the quantized patterns first leaves the dq as its own op in front of an fp32 conv.
    """
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    if not mixed:
        return [XnnpackPartitioner()]
    return [XnnpackPartitioner(config_precisions=[ConfigPrecisionType.STATIC_QUANT, ConfigPrecisionType.DYNAMIC_QUANT]),
            XnnpackPartitioner(config_precisions=ConfigPrecisionType.FP32)]


def export_pte(module: torch.nn.Module, example_inputs: tuple, path: Path, mixed: bool = False) -> dict:
    from executorch.exir import to_edge_transform_and_lower

    try:
        exported = torch.export.export(module, example_inputs, strict=False)
        program = to_edge_transform_and_lower(exported, partitioner=partitioners(mixed))
        delegation = delegation_summary(program.exported_program().graph_module)
        et_program = program.to_executorch()
    except Exception as exc:  # noqa: BLE001 - export raises many exception types; the user needs the op and file
        raise EdgekdError(f"ExecuTorch export failed: {type(exc).__name__}: {str(exc)[:400]}", file=str(path),
                          hint="an unsupported operator is named above; exclude the layer or change the model") from exc
    write_bytes(path, et_program.buffer)
    return {"delegate": "XnnpackBackend", "partitioning": "quantized then fp32" if mixed else "single", **delegation}


def delegation_summary(graph_module) -> dict:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    not_delegated = Counter()
    delegated = Counter()
    for op, row in info.delegation_by_operator.items():
        if row.delegated:
            delegated[op] += row.delegated
        if row.non_delegated:
            not_delegated[op] += row.non_delegated
    return {"delegated_subgraphs": info.num_delegated_subgraphs, "delegated_ops": info.num_delegated_nodes,
            "non_delegated_ops": info.num_non_delegated_nodes, "non_delegated_by_op": dict(not_delegated),
            "delegated_by_op": dict(delegated)}
