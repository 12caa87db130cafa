"""End-to-end mixed-precision artifacts from one plan: a .pte via PT2E + XNNPACK, a QDQ ONNX via onnxruntime.

Each function writes its artifact and returns, per layer, the precision found in it (edgekd.quant.inspect), so the
caller can check the plan was honoured. The ptq/export stages do the same steps with the run's context; these are
the plain-argument forms the demo tool and the integration tests use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def pte_with_plan(module: torch.nn.Module, example_inputs: tuple, calibration: Sequence[tuple], plan, path: Path,
                  backend: str = "executorch-xnnpack") -> dict:
    """PT2E with the plan's float layers left out of the quantizer -> XNNPACK-lowered .pte; per-layer precisions.

    plan=None writes the fp32 .pte (no quantizer at all).
    """
    from edgekd.export.executorch import lower
    from edgekd.quant import pt2e
    from edgekd.quant.inspect import pte_layer_precisions
    from edgekd.quant.plan import quantizable_layers
    from edgekd.report.atomic import write_bytes

    layers = quantizable_layers(module)
    if plan is None:
        graph = module.eval()
        skip: dict[str, str] = {}
    else:
        skip = plan.float_layers(layers)
        quantizer = pt2e.make_quantizer(backend, skip_modules=sorted(skip))
        prepared = pt2e.prepare(module, example_inputs, quantizer)
        pt2e.calibrate(prepared, calibration)
        graph = pt2e.convert(prepared)
    exported = torch.export.export(graph, example_inputs, strict=False)
    program, partitioning = lower(exported, mixed=bool(skip))
    found = pte_layer_precisions(program, layers)
    write_bytes(Path(path), program.to_executorch().buffer)
    return {"path": Path(path), "layers": found, "float_layers": skip, "quantized_graph": graph,
            "partitioning": partitioning}


def export_fp32_onnx(module: torch.nn.Module, example_inputs: tuple, path: Path, input_names: list[str] | None = None,
                     opset: int = 18) -> Path:
    """fp32 ONNX with the dynamo exporter (its node metadata carries module name scopes), one file."""
    import contextlib
    import io

    from edgekd.report.atomic import atomic_path

    with atomic_path(Path(path)) as tmp, contextlib.redirect_stdout(io.StringIO()):
        onnx_tmp = tmp.with_name(tmp.name + ".onnx")
        if not isinstance(module, torch.fx.GraphModule):  # converted PT2E graphs refuse .eval(); already eval
            module = module.eval()
        torch.onnx.export(module, example_inputs, str(onnx_tmp), dynamo=True, external_data=False,
                          opset_version=opset, input_names=input_names)
        onnx_tmp.replace(tmp)
    return Path(path)


def onnx_with_plan(fp32_onnx: Path, calibration: Sequence[tuple], plan, path: Path, module_names: list[str],
                   mode: str = "static") -> dict:
    """onnxruntime QDQ (static) or dynamic int8 with the plan's float layers in nodes_to_exclude."""
    from edgekd.quant.inspect import onnx_layer_precisions
    from edgekd.quant.ort import ort_quantize, plan_to_onnx_nodes

    excluded = plan_to_onnx_nodes(plan, fp32_onnx, module_names)
    report = ort_quantize(fp32_onnx, path, mode=mode, calibration_inputs=calibration, nodes_to_exclude=excluded)
    found = onnx_layer_precisions(path, module_names)
    return {"path": Path(path), "layers": found, "excluded_nodes": excluded, **report}
