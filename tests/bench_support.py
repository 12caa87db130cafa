"""Helpers for the bench/size tests: real tiny artifacts, an artifacts folder with manifest.json, a profile copy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def mlp_onnx(path: Path, layers: int = 2, width: int = 32, seed: int = 0) -> Path:
    """A real ONNX MLP (Gemm+Relu per layer, named initializers), built with onnx.helper: fast, no torch export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    for i in range(layers):
        w = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), f"layers.{i}.weight")
        b = numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), f"layers.{i}.bias")
        inits += [w, b]
        nodes.append(helper.make_node("Gemm", [prev, w.name, b.name], [f"h{i}"], transB=1))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"a{i}"]))
        prev = f"a{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def artifacts_folder(folder: Path, artifact: Path, inputs: dict[str, np.ndarray], name: str = "tiny") -> Path:
    """An out/<name> folder as `edgekd export` leaves it: the artifact, inputs.npz and manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / artifact.name
    if artifact.resolve() != target.resolve():
        target.write_bytes(artifact.read_bytes())
    np.savez(folder / "inputs.npz", **inputs)
    data = target.read_bytes()
    fmt, runtime = ("pte", "executorch") if target.suffix == ".pte" else ("onnx", "onnxruntime")
    manifest = {"manifest_version": 1, "inputs": "inputs.npz", "budgets": {},
                "artifacts": [{"name": f"{name}_fp32_{fmt}", "path": target.name, "format": fmt,
                               "runtime": runtime, "precision": "fp32", "bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest(), "is_reference": False,
                               "details": {}, "parity": {"drop": 0.0}, "bench": {},
                               # verify's accuracy verdict, as an export writes it (budgets without one are
                               # "not measured" and leave the verdict unverified)
                               "verdicts": [{"metric": "accuracy_drop", "status": "pass", "value": 0.0,
                                             "limit": 0.05, "kind": "max", "unit": "", "margin": 0.05,
                                             "runner": "", "basis": "fp32 artifact vs fp32 PyTorch"}]}]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def profile_copy(folder: Path, base: str = "x86-cpu", **budgets) -> Path:
    """A copy of a shipped device profile with some budgets changed (the acceptance test's 'copy of a profile')."""
    data = yaml.safe_load((ROOT / "device_profiles" / f"{base}.yaml").read_text())
    data["name"] = f"{base}-test"
    data["threads"] = 1
    data.setdefault("budgets", {}).update(budgets)
    path = folder / f"{base}-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every non-hidden file under folder with its bytes: proves a failed run changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def mlp_pte(path: Path, layers: int = 2, width: int = 32) -> Path:
    """A real ExecuTorch .pte (Linear+ReLU per layer, lowered to XNNPACK), the same layers as mlp_onnx; ~2 s each."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    program = torch.export.export(torch.nn.Sequential(*mods).eval(), (torch.ones(1, width),))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer)
    return path
