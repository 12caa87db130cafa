"""Run the Optimum peer (tools/peers_optimum.py) in the peer venv from edgekd's own python, for tools/bench.py.

The peer venv (`make peers`, .venv-peers) holds transformers 4.x + optimum; edgekd's venv holds transformers 5, so
the two never share a process. The ONNX files it writes run in edgekd's onnxruntime like any other candidate.

Optimum's ONNX (task feature-extraction) takes input_ids, attention_mask and token_type_ids and returns
last_hidden_state: a caller feeds token_type_ids = 0 and applies sentence-transformers' mean pooling + L2
normalisation (pool_embeddings) to compare it with edgekd's embedding output.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
SCRIPT = ROOT / "tools" / "peers_optimum.py"


def optimum_minilm_int8(out_dir: Path, timeout_s: float = 1200) -> dict[str, Path]:
    """Export all-MiniLM-L6-v2 with optimum-cli and quantize it with ORTQuantizer's avx512_vnni preset into
    `out_dir`; returns {"fp32": path, "int8": path}. Raises RuntimeError when the peer venv is missing or fails."""
    if not PEERS_PYTHON.is_file():
        raise RuntimeError(f"peer venv missing ({PEERS_PYTHON}): run `make peers`")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([str(PEERS_PYTHON), str(SCRIPT), "--out", str(out_dir)], capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"peers_optimum.py exit {proc.returncode}: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (out_dir / "optimum.json").write_text(json.dumps(result, indent=1))
    return {"fp32": Path(result["fp32"]), "int8": Path(result["int8"])}


def optimum_feed(input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs of Optimum's BERT ONNX for one tokenized batch (single-segment sentences)."""
    return {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64),
            "token_type_ids": np.zeros_like(input_ids, dtype=np.int64)}


def pool_embeddings(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling over real tokens + L2 normalisation (what edgekd's module has inside)."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (last_hidden_state * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
