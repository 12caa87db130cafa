"""ExecuTorch export: torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> .pte, written atomically.

One partitioner lowers int8 and fp32 layers together: every partition boundary costs a delegate call plus layout
and type conversions, so the graph is cut only where XNNPACK cannot run an op.

Delegation is recorded per op type (rule 6, docs/architecture.md): every op left outside the delegate is listed,
since on a phone each of them runs on the portable CPU kernels and can dominate latency.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from edgekd.errors import EdgekdError
from edgekd.report.atomic import write_bytes


def quantized_pad_config():
    """XNNPACK's constant-pad partitioner config, allowed to take a pad between int8 tensors as an int8 pad.

    The stock config lowers every pad in fp32, so dq -> pad -> q (a zero pad quantized with its input's scale, see
    edgekd.quant.pt2e.share_pad_annotations) ran as Convert, fp32 pad, Convert: on EfficientNet-Lite0 17 pads and 34
    Converts, a quarter of the int8 time (ETDump, tools/etdump_profile.py). As an int8 pad whose value is the zero
    point, XNNPACK folds it into the convolution after it, as it already does in fp32. The generic quantized
    pattern (all inputs dq, one q user, both tagged implicit) is the library's own, used by its add/mul/cat configs.
    The partitioner takes config classes, so this is a subclass of the stock one, not a copy.
    """
    from executorch.backends.xnnpack.partition.config.generic_node_configs import ConstantPadConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType

    class QuantizedConstantPadConfig(ConstantPadConfig):
        def supported_precision_types(self):
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

    return QuantizedConstantPadConfig


def partitioners(two_pass: bool = False) -> list:
    """One XNNPACK partitioner for every precision: int8 layers and the fp32 layers a plan keeps lie in ONE
    delegate, with a Convert where the precision changes (an all-int8 EfficientNet-Lite0: 1 partition).

    `two_pass` is the fallback if that lowering fails: quantized patterns first, then an fp32 pass. Each precision
    change then cuts the graph (measured: 36 partitions on EfficientNet-Lite0 with its stem kept in fp32, each
    with a delegate call and Transpose/Convert at its borders). The one failure seen (ExecuTorch's InsertPadQDQPass
    gave an fp32 conv a quantized input: "Weight and Input should both be quantized") no longer happens now that
    pads carry their own Q/DQ.
    """
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import ConstantPadConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    configs = [quantized_pad_config() if c is ConstantPadConfig else c for c in ALL_PARTITIONER_CONFIGS]
    if not two_pass:
        return [XnnpackPartitioner(configs=configs)]
    return [XnnpackPartitioner(configs=configs,
                               config_precisions=[ConfigPrecisionType.STATIC_QUANT, ConfigPrecisionType.DYNAMIC_QUANT]),
            XnnpackPartitioner(configs=configs, config_precisions=ConfigPrecisionType.FP32)]


def lower(exported, mixed: bool = False) -> tuple:
    """to_edge_transform_and_lower with one partitioner; a mixed-precision graph that fails falls back to two
    passes. Returns the lowered program and how it was partitioned (recorded in the manifest)."""
    from executorch.exir import to_edge_transform_and_lower

    try:
        return to_edge_transform_and_lower(exported, partitioner=partitioners()), "single"
    except Exception as exc:  # noqa: BLE001 - lowering raises bare RuntimeErrors
        if not mixed:
            raise
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
    return (to_edge_transform_and_lower(exported, partitioner=partitioners(two_pass=True)),
            f"quantized then fp32 (one pass failed: {reason})")


def export_pte(module: torch.nn.Module, example_inputs: tuple, path: Path, mixed: bool = False,
               layers: list[str] | None = None) -> dict:
    """`layers`: module names whose precision is read back from the lowered program (details["layers"]), so a
    precision plan can be checked against what the file holds."""
    try:
        exported = torch.export.export(module, example_inputs, strict=False)
        program, partitioning = lower(exported, mixed)
        delegation = delegation_summary(program.exported_program().graph_module)
        if layers is not None:
            from edgekd.quant.inspect import pte_layer_precisions

            delegation["layers"] = pte_layer_precisions(program, layers)
        et_program = program.to_executorch(backend_config(module))
    except Exception as exc:  # noqa: BLE001 - export raises many exception types; the user needs the op and file
        raise EdgekdError(f"ExecuTorch export failed: {type(exc).__name__}: {str(exc)[:400]}", file=str(path),
                          hint="an unsupported operator is named above; exclude the layer or change the model") from exc
    write_bytes(path, et_program.buffer)
    return {"delegate": "XnnpackBackend", "partitioning": partitioning, **delegation}


def backend_config(module: torch.nn.Module):
    """ExecuTorch's quant fusion where an embedding reads an int8 table: dequantize -> embedding becomes
    quantized_decomposed.embedding_byte (edgekd/quant/dynamic_text.py); without it the table would be dequantized
    by portable kernels into a float copy at every call. Other graphs keep the default passes."""
    from executorch.exir import ExecutorchBackendConfig

    from edgekd.quant.dynamic_text import has_quantized_embedding

    fuse = isinstance(module, torch.fx.GraphModule) and has_quantized_embedding(module)
    return ExecutorchBackendConfig(do_quant_fusion_and_const_prop=True) if fuse else None


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
