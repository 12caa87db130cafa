"""Export SmolLM2-135M 8da4w .pte variants and measure bytes and perplexity (first 512 tokens of Pride and
Prejudice, windows of 255, as recipes/smollm2/8da4w.yaml) in the ExecuTorch runtime.

    PYTHONPATH=src python tools/llm_pte_measure.py OUT_DIR VARIANT... (plain | source | source-head8 |
                                                                      source-head8-fp32-offsets | source-head4-gptq |
                                                                      gptq-head8)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

VARIANTS = {"plain": dict(gguf=False, lm_head_bits=None), "source": dict(gguf=True, lm_head_bits=None),
            "source-head8": dict(gguf=True, lm_head_bits=8),  # the recipe: int8 block constants
            "source-head8-fp32-offsets": dict(gguf=True, lm_head_bits=8, block_offsets="fp32"),
            "source-head4-gptq": dict(gguf=True, lm_head_bits=4),
            "gptq-head8": dict(gguf=False, lm_head_bits=8, gptq=True)}  # llm.int4_grid gptq: no source grid kept  # 4-bit lm_head, GPTQ on Emma (llm/gptq_weights.py)


def main() -> None:
    import torch

    from edgekd.config.schema import LlmConfig
    from edgekd.llm.corpus import corpus_tokens
    from edgekd.llm.decode import pte_session, perplexity
    from edgekd.llm.export import export_pte
    from edgekd.llm.gptq_weights import gptq_lm_head, gptq_weights, projection_names
    from edgekd.llm.models import load_causal_lm, smollm2_folder, smollm2_gguf_path

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    model, tok = load_causal_lm(smollm2_folder())
    tokens = corpus_tokens(tok, "austen:prideprejudice", 512)
    for name in sys.argv[2:]:
        kw = VARIANTS[name]
        path = out / f"smollm2.8da4w.{name}.pte"
        t0 = time.time()
        gptq = {"lm_head": gptq_lm_head(model, tok, LlmConfig(lm_head_bits=4))[0]} if kw["lm_head_bits"] == 4 else None
        if kw.get("gptq"):
            gptq = gptq_weights(model, tok, LlmConfig(int4_grid="gptq"), projection_names(model))[0]
        details = export_pte(model, path, 256, "8da4w", 32, "int8", smollm2_gguf_path() if kw["gguf"] else None,
                             kw["lm_head_bits"], kw.get("block_offsets", "int8"), gptq=gptq)
        export_s = time.time() - t0
        ppl = perplexity(pte_session(path, 256), tokens, 255)["perplexity"]
        grid = details.get("source_grid")
        if isinstance(grid, dict):
            grid.pop("layers_max_abs_error", None)
        result = {"bytes": path.stat().st_size, "perplexity": ppl, "export_s": export_s, "details": details}
        (out / f"pte.{name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(name, path.stat().st_size, f"{ppl:.3f}", f"export {export_s:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
