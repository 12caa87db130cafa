"""The 4-bit lm_head (`llm.lm_head_bits: 4`): GPTQ on the model's own lm_head inputs over calibration text.

Why: the lm_head is the largest single weight a decode step reads (SmolLM2-135M: 49152 x 576, 28 MB at int8, 14 MB
at 4 bits of the ~97 MB a step of the 8da4w .pte reads), and the layer whose rounding costs the most perplexity.
Round-to-nearest at 4 bits costs +9% perplexity on SmolLM2; GPTQ with the inputs' second moment costs about +1%
(edgekd/quant/gptq.py). The calibration text is a different novel from the one perplexity is measured on
(config: llm.calibration_corpus must differ from llm.corpus), so the measurement is held out.
"""

from __future__ import annotations

import time

from edgekd.config.schema import LlmConfig
from edgekd.errors import EdgekdError
from edgekd.quant.gptq import GroupQuant, gptq, second_moment

WINDOW = 255  # tokens per forward pass, as perplexity windows (edgekd/llm/decode.py)


def lm_head_inputs(model, tokens: list[int], window: int = WINDOW):
    """Yield the lm_head's input rows [n, hidden] for `tokens`, one window at a time (fp32 model, no cache)."""
    import torch

    head = model.get_output_embeddings()
    captured = []
    hook = head.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(tokens) - 1, window):
                model(input_ids=torch.tensor([tokens[start:start + window]]))
                x = captured.pop()
                yield x.reshape(-1, x.shape[-1])
    finally:
        hook.remove()


def gptq_lm_head(model, tokenizer, cfg: LlmConfig) -> tuple[GroupQuant, dict]:
    """(4-bit GroupQuant of the lm_head in groups of llm.group_size, what was done for the report)."""
    from .corpus import corpus_tokens

    head = model.get_output_embeddings()
    if head.weight.shape[1] % cfg.group_size:
        raise EdgekdError(f"the lm_head's input size {head.weight.shape[1]} is not a multiple of the group size "
                          f"{cfg.group_size}", key="llm.group_size", hint="choose a group size dividing the hidden size")
    t0 = time.time()
    tokens = corpus_tokens(tokenizer, cfg.calibration_corpus, cfg.calibration_tokens)
    h = second_moment(x.numpy() for x in lm_head_inputs(model, tokens))
    weight = head.weight.detach().float().numpy()
    quant = gptq(weight, h, bits=4, group=cfg.group_size, damp=cfg.gptq_damp)
    return quant, {"lm_head": f"4-bit symmetric, group {cfg.group_size}, GPTQ-rounded (damp {cfg.gptq_damp}) on "
                              f"{len(tokens)} tokens of {cfg.calibration_corpus}",
                   "lm_head_proxy_error": {"gptq": quant.proxy_error, "round_to_nearest": quant.proxy_error_rtn},
                   "lm_head_gptq_s": round(time.time() - t0, 1)}
