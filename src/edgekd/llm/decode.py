"""One step interface over the three runtimes, and what is built on it: greedy decoding, perplexity, tokens/s.

A session holds the KV cache: `reset()` forgets it, `feed(ids)` appends tokens and returns their logits
[len(ids), vocab] as float32 numpy. PyTorch (the fp32 reference), the ExecuTorch runtime (.pte) and onnxruntime
(.onnx) all go through the same code, so the fp32 model and every artifact are measured identically.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Session:
    feed_fn: Callable[[list[int], int], np.ndarray]
    reset_fn: Callable[[], None]
    max_len: int
    pos: int = 0
    name: str = ""

    def reset(self) -> None:
        self.reset_fn()
        self.pos = 0

    def feed(self, ids: list[int]) -> np.ndarray:
        if self.pos + len(ids) > self.max_len:
            raise ValueError(f"{self.name}: {self.pos + len(ids)} tokens exceed the cache length {self.max_len}")
        logits = self.feed_fn(list(ids), self.pos)
        self.pos += len(ids)
        return logits


def torch_session(model, max_len: int) -> Session:
    import torch
    from transformers import DynamicCache

    state = {"cache": DynamicCache(config=model.config)}

    def feed(ids, pos):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), position_ids=torch.arange(pos, pos + len(ids))[None],
                        past_key_values=state["cache"], use_cache=True)
        return out.logits[0].float().numpy()

    def reset():
        state["cache"] = DynamicCache(config=model.config)

    return Session(feed, reset, max_len, name="pytorch")


POSITIONS = ("auto", "range", "start")


def pte_session(path: Path, max_len: int, positions: str = "auto") -> Session:
    """The cache is in the program; a position starting at 0 overwrites it (the causal mask hides the rest).

    `positions` is what the program's second input holds: "range" the cache position of every fed token
    (cache_position[s], edgekd's .pte, edgekd/llm/export.py), "start" the first token's position only (input_pos[1],
    ExecuTorch's export_llm), "auto" reads it from the program: a one-element input beside a longer token input is
    a start position. A program that returns the last position's logits only (export_llm without
    generate_full_logits) gives one row per call: it decodes and times, perplexity refuses it.
    """
    import torch
    from executorch.runtime import Runtime

    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401 - kernels LLM programs may use
    import executorch.kernels.quantized  # noqa: F401 - quantized embedding kernels

    from edgekd.report.noise import native_stderr_quiet

    if positions not in POSITIONS:
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"unknown positions {positions!r}", file=str(path), hint=f"allowed: {', '.join(POSITIONS)}")
    with native_stderr_quiet():  # the threadpool's cpuinfo probe prints from C++ on the first load
        program = Runtime.get().load_program(Path(path))
        method = program.load_method("forward")
    if positions == "auto":
        meta = program.metadata("forward")
        sizes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
        positions = "start" if len(sizes) == 2 and sizes[1] == (1,) and sizes[0][-1] > 1 else "range"
    start = positions == "start"

    def feed(ids, pos):
        where = torch.tensor([pos]) if start else torch.arange(pos, pos + len(ids))
        out = method.execute([torch.tensor([ids], dtype=torch.long), where])[0]
        return out.float().reshape(-1, out.shape[-1]).numpy()

    return Session(feed, lambda: None, max_len - 1, name=Path(path).name)


def onnx_session(path: Path, max_len: int, threads: int = 0) -> Session:
    from edgekd.runtime.sessions import ort_session

    sess = ort_session(path, threads)
    past_inputs = [i for i in sess.get_inputs() if i.name.startswith("past_")]
    state: dict = {}

    def reset():
        state["past"] = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in past_inputs}

    def feed(ids, pos):
        feeds = {"input_ids": np.array([ids], np.int64), "position_ids": np.arange(pos, pos + len(ids))[None]}
        feeds.update(state["past"])
        outs = sess.run(None, feeds)
        names = [o.name for o in sess.get_outputs()]
        state["past"] = {n.replace("present_", "past_"): v for n, v in zip(names[1:], outs[1:])}
        return outs[0][0]

    reset()
    return Session(feed, reset, max_len, name=Path(path).name)


def open_session(path: Path, runtime: str, max_len: int, threads: int = 0) -> Session:
    if runtime == "executorch":
        return pte_session(path, max_len)
    if runtime == "onnxruntime":
        return onnx_session(path, max_len, threads)
    from edgekd.errors import EdgekdError

    raise EdgekdError(f"no LLM runtime for {runtime!r}", file=str(path), hint="allowed: executorch, onnxruntime")


def greedy(session: Session, prompt: list[int], max_new_tokens: int, eos: int | None = None) -> list[int]:
    """Greedy continuation: prefill the prompt, then one token per step fed back into the cache."""
    session.reset()
    logits = session.feed(prompt)
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(np.argmax(logits[-1]))
        out.append(token)
        if (eos is not None and token == eos) or session.pos + 1 > session.max_len:
            break
        logits = session.feed([token])
    return out


def matched_prefix(reference: list[int], candidate: list[int]) -> int:
    n = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        n += 1
    return n


def perplexity(session: Session, tokens: list[int], window: int, per_token: bool = False) -> dict:
    """exp(mean NLL) over non-overlapping windows, each from an empty cache (the same windows for every runtime).

    per_token: also each scored token's NLL and whether its argmax was the target, so two artifacts can be compared
    token by token with paired statistics (edgekd/stats.py) instead of two bare perplexities.
    """
    nlls, top1 = [], []
    for start in range(0, len(tokens) - 1, window):
        chunk = tokens[start:start + window]
        if len(chunk) < 2:
            break
        session.reset()
        logits = session.feed(chunk).astype(np.float64)
        if len(logits) != len(chunk):
            raise ValueError(f"{session.name}: {len(logits)} rows of logits for {len(chunk)} tokens (a program that "
                             "returns the last position only cannot be scored)")
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        targets = np.array(chunk[1:])
        nlls.append(-logp[np.arange(len(targets)), targets])
        top1.append(logp[:-1].argmax(-1) == targets)
    nll = np.concatenate(nlls)
    result = {"perplexity": math.exp(float(nll.sum()) / len(nll)), "tokens_scored": len(nll), "window": window}
    if per_token:
        result.update(token_nll=nll.tolist(), token_top1=np.concatenate(top1).tolist())
    return result


def timed_generation(session: Session, prompt: list[int], new_tokens: int, repeats: int = 3) -> dict:
    """Prefill tokens/s (the whole prompt in one call) and decode tokens/s (one token per call), best of repeats.

    Best-of is used because this machine is shared: the minimum is the least disturbed measurement.
    """
    prefill_s, decode_s = [], []
    for _ in range(repeats):
        session.reset()
        t0 = time.perf_counter()
        logits = session.feed(prompt)
        t1 = time.perf_counter()
        steps = 0
        for _ in range(new_tokens):
            if session.pos + 1 > session.max_len:
                break
            logits = session.feed([int(np.argmax(logits[-1]))])
            steps += 1
        t2 = time.perf_counter()
        prefill_s.append(t1 - t0)
        decode_s.append((t2 - t1) / max(steps, 1))
    return {"prompt_tokens": len(prompt), "decode_tokens": new_tokens, "repeats": repeats,
            "prefill_tokens_per_s": len(prompt) / min(prefill_s), "prefill_ms": 1000 * min(prefill_s),
            "decode_tokens_per_s": 1.0 / min(decode_s), "decode_ms_per_token": 1000 * min(decode_s),
            "decode_ms_per_token_median": 1000 * float(np.median(decode_s))}
