#!/usr/bin/env python3
"""The peer of edgekd's SmolLM2 8da4w `.pte`: ExecuTorch's own LLM flow, run the way its docs say, nothing of edgekd's.

1. ExecuTorch's `examples/models/smollm2/convert_weights.py` turns the SmolLM2 Hugging Face folder (edgekd's
   GGUF conversion, src/edgekd/llm/models.py `smollm2_folder`) into ExecuTorch's Llama checkpoint.
2. `python -m executorch.extension.llm.export.export_llm --config <yaml>` with model_class smollm2, 8da4w in groups
   of 32 (every Linear, the untied lm_head copy included), int8 per-row embedding, KV cache with its SDPA op, XNNPACK
   with extended ops, max_seq_length 256 as edgekd's recipe (recipes/smollm2/8da4w.yaml).

Two gaps of the pip package (executorch 1.5.1), filled as below and written into `<out>/export_llm.json`:
- the wheel does not ship `examples/models/smollm2/135M_config.json`; the params file is written from the HF
  folder's config.json with the same keys and values as that upstream file.
- `convert_weights.py` and `executorch.examples.models.smollm2/__init__.py` import torchtune's
  `FullModelHFCheckpointer`. torchtune 0.6.1 (its last release, installed by `make peers-llm` into .venv-peers-llm
  with --no-deps) does not import beside torchao 0.18 (`torchao.dtypes.nf4tensor`, `TensorCoreTiledLayoutType` are
  gone). So `torchtune.training` is given a stand-in whose checkpointer does what torchtune's does for model_type
  LLAMA3: load model.safetensors and config.json, then call torchtune's own `hf_to_tune` (loaded from the installed
  torchtune's models/convert_weights.py, which imports only torch).

    .venv/bin/python tools/peer_export_llm.py OUT [--hf-folder DIR] [--full-logits | --last-logits]
writes OUT/smollm2.export_llm.8da4w.pte (full logits, what perplexity needs) and OUT/export_llm.json (config, command,
seconds). `--last-logits` writes OUT/smollm2.export_llm.8da4w.last.pte, export_llm's default (logits of the last
position only), which can be timed but not scored.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHTUNE_DIR = Path(os.environ.get("EDGEKD_PEERS_LLM", ROOT / ".venv-peers-llm"))
PTE_NAME = "smollm2.export_llm.8da4w.pte"
PTE_LAST_NAME = "smollm2.export_llm.8da4w.last.pte"


def torchtune_standin(torchtune_dir: Path = TORCHTUNE_DIR) -> None:
    """Make `from torchtune.training import FullModelHFCheckpointer` work (see the module docstring for why)."""
    source = torchtune_dir / "torchtune" / "models" / "convert_weights.py"
    if not source.is_file():
        raise SystemExit(f"torchtune is not installed in {torchtune_dir} (run `make peers-llm`)")
    spec = importlib.util.spec_from_file_location("torchtune_convert_weights", source)
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)

    class FullModelHFCheckpointer:
        """torchtune 0.6.1 FullModelHFCheckpointer.load_checkpoint for model_type LLAMA3, without its package."""

        def __init__(self, checkpoint_dir, checkpoint_files, output_dir, model_type):
            if model_type != "LLAMA3":
                raise ValueError(f"stand-in covers model_type LLAMA3 only, not {model_type}")
            self.dir, self.files = Path(checkpoint_dir), list(checkpoint_files)

        def load_checkpoint(self) -> dict:
            from safetensors.torch import load_file

            merged = {}
            for name in self.files:
                merged.update(load_file(self.dir / name))
            cfg = json.loads((self.dir / "config.json").read_text())
            return {"model": convert.hf_to_tune(merged, num_heads=cfg["num_attention_heads"],
                                                num_kv_heads=cfg["num_key_value_heads"], dim=cfg["hidden_size"],
                                                head_dim=cfg.get("head_dim"))}

    package = types.ModuleType("torchtune")
    package.__path__ = []
    training = types.ModuleType("torchtune.training")
    training.FullModelHFCheckpointer = FullModelHFCheckpointer
    package.training = training
    sys.modules.setdefault("torchtune", package)
    sys.modules.setdefault("torchtune.training", training)


def params_json(hf_folder: Path) -> dict:
    """ExecuTorch's ModelArgs for SmolLM2, from the HF config (keys of upstream examples/models/smollm2/135M_config)."""
    cfg = json.loads((hf_folder / "config.json").read_text())
    rope = cfg.get("rope_parameters") or {}
    return {"dim": cfg["hidden_size"], "ffn_dim_multiplier": 1, "hidden_dim": cfg["intermediate_size"],
            "n_heads": cfg["num_attention_heads"], "n_kv_heads": cfg["num_key_value_heads"],
            "n_layers": cfg["num_hidden_layers"], "norm_eps": round(float(cfg["rms_norm_eps"]), 8),
            "rope_theta": float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))), "use_scaled_rope": False,
            "vocab_size": cfg["vocab_size"], "use_hf_rope": False, "attention_qkv_bias": False}


def llm_config(checkpoint: Path, params: Path, out: Path, name: str, full_logits: bool, max_seq_len: int,
               bos: int, eos: int) -> dict:
    """The export_llm YAML: the shape of upstream's qwen3 XNNPACK 8da4w config, for smollm2 and edgekd's lengths."""
    return {
        "base": {"model_class": "smollm2", "checkpoint": str(checkpoint), "params": str(params),
                 "metadata": json.dumps({"get_bos_id": bos, "get_eos_ids": [eos]})},
        "model": {"use_kv_cache": True, "use_sdpa_with_kv_cache": True, "dtype_override": "fp32"},
        # export_llm takes an output_name ending in .pte as the path verbatim, not under output_dir
        "export": {"max_seq_length": max_seq_len, "max_context_length": max_seq_len, "output_dir": str(out),
                   "output_name": str(out / name)},
        "quantization": {"qmode": "8da4w", "group_size": 32, "embedding_quantize": "8,0"},
        "backend": {"xnnpack": {"enabled": True, "extended_ops": True}},
        "debug": {"generate_full_logits": full_logits},
    }


def export(out: Path, hf_folder: Path, full_logits: bool = True, max_seq_len: int = 256) -> dict:
    """Convert, write the YAML, run export_llm in a child process; returns what was run and how long it took."""
    import yaml

    out = Path(out).resolve()  # the children run in `out`: a relative path would point below it
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "smollm2.executorch_checkpoint.pth"
    record: dict = {"hf_folder": str(hf_folder)}
    if not checkpoint.is_file():
        t0 = time.perf_counter()
        _run([sys.executable, __file__, "_convert", str(hf_folder), str(checkpoint)], out)
        record["convert_s"] = time.perf_counter() - t0
    params = out / "smollm2_135M_params.json"
    params.write_text(json.dumps(params_json(hf_folder), indent=1) + "\n")
    gen = json.loads((hf_folder / "generation_config.json").read_text())
    name = PTE_NAME if full_logits else PTE_LAST_NAME
    config = llm_config(checkpoint, params, out, name, full_logits, max_seq_len, int(gen["bos_token_id"]),
                        int(gen["eos_token_id"] if isinstance(gen["eos_token_id"], int) else gen["eos_token_id"][0]))
    cfg_path = out / f"{Path(name).stem}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, __file__, "_export_llm", "--config", str(cfg_path)]
    t0 = time.perf_counter()
    _run(command, out)  # hydra writes its outputs/ log folder under the working directory
    record.update({"pte": str(out / name), "config": config, "params": params_json(hf_folder),
                   "command": " ".join(command[2:]).replace("_export_llm", "(torchtune stand-in) "
                                                            "python -m executorch.extension.llm.export.export_llm"),
                   "export_s": time.perf_counter() - t0, "bytes": (out / name).stat().st_size})
    return record


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(command, check=True, env=env, cwd=str(cwd))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_convert":  # child: ExecuTorch's convert_weights, unchanged
        torchtune_standin()
        from executorch.examples.models.smollm2.convert_weights import convert_weights

        convert_weights(argv[1], argv[2])
        return 0
    if argv and argv[0] == "_export_llm":  # child: export_llm's own entry point, unchanged
        torchtune_standin()
        import torch

        torch.set_num_threads(1)
        from executorch.extension.llm.export import export_llm

        sys.argv = ["export_llm", *argv[1:]]
        export_llm.main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hf-folder", type=Path, default=None, help="default: edgekd's SmolLM2 folder")
    parser.add_argument("--last-logits", action="store_true", help="export_llm's default output (not scorable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    if args.hf_folder is None:
        from edgekd.llm.models import smollm2_folder

        args.hf_folder = smollm2_folder()
    record = export(args.out, args.hf_folder, full_logits=not args.last_logits)
    stem = Path(record["pte"]).stem
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("pte", "bytes", "export_s", "command")}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
