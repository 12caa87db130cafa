"""Peers for `make bench`: the artifacts a user would build by hand instead of running edgekd.

`plain_executorch_pte` is the ExecuTorch flow from its XNNPACK quantization tutorial, with nothing of edgekd's in
it: XNNPACKQuantizer with the symmetric per-channel config on every layer, prepare_pt2e / calibrate / convert_pt2e,
one XnnpackPartitioner (only the file write is edgekd's). edgekd's int8 .pte must be no slower than this one, at
equal or better parity.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.report.atomic import write_bytes


def plain_executorch_pte(module: torch.nn.Module, example_inputs: tuple, calibration: list[tuple],
                         path: Path) -> Path:
    """The plain int8 ExecuTorch flow for `module`, calibrated on `calibration`, written to `path` (atomically)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    module = module.eval()
    graph = torch.export.export(module, example_inputs, strict=False).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for sample in calibration:
            prepared(*sample)
    converted = convert_pt2e(prepared)
    program = to_edge_transform_and_lower(torch.export.export(converted, example_inputs, strict=False),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    write_bytes(Path(path), program.buffer)
    return Path(path)
