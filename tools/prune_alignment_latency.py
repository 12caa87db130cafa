#!/usr/bin/env python3
"""Latency only: EfficientNet-Lite0 fp32 ONNX unpruned vs pruned to 30% fewer MACs with odd channel counts
(round_to unset) vs channel counts kept multiples of 8 (round_to 8); the same export code, timed interleaved in
onnxruntime (1 thread, batch 1). The pruned weights are not retrained: this measures the graphs' speed, nothing else.

    PYTHONPATH=src .venv/bin/python tools/prune_alignment_latency.py [OUT_FOLDER]
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edgekd.config.schema import DataConfig  # noqa: E402
from edgekd.export.onnx import export_onnx  # noqa: E402
from edgekd.models.builtin import efficientnet_lite0  # noqa: E402
from edgekd.prune import structured  # noqa: E402


def main() -> None:
    import onnxruntime as ort

    torch.set_num_threads(1)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/prune_alignment")
    out.mkdir(parents=True, exist_ok=True)
    bundle = efficientnet_lite0(DataConfig(source="builtin:photo_crops"))
    paths = {}
    for name, round_to in (("unpruned", None), ("pruned", None), ("pruned_round8", 8)):
        module = copy.deepcopy(bundle.module).eval()
        if name != "unpruned":
            settings = structured.Settings(kind="macs", target=0.3, heads=["_fc"], round_to=round_to)
            plan = structured.search(module, bundle.example_inputs, settings)
            structured.cut(module, bundle.example_inputs, settings, plan.ratio)
        print(name, "MACs, params:", structured.count(module, bundle.example_inputs), flush=True)
        paths[name] = out / f"{name}.onnx"
        export_onnx(module, bundle, paths[name])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(v), opts, providers=["CPUExecutionProvider"]) for k, v in paths.items()}
    x = np.random.rand(1, 3, 224, 224).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    names = list(sessions)
    for r in range(8):  # interleaved rounds, start rotated: drift lands on all three alike
        for key in names[r % 3:] + names[:r % 3]:
            sess = sessions[key]
            feed = {sess.get_inputs()[0].name: x}
            for _ in range(2):
                sess.run(None, feed)
            for _ in range(10):
                start = time.perf_counter()
                sess.run(None, feed)
                times[key].append((time.perf_counter() - start) * 1000)
    for key, values in times.items():
        print(key, "p50 ms", round(statistics.median(values), 2), "n", len(values), flush=True)


if __name__ == "__main__":
    main()
