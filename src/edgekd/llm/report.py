"""The causal-LM section of report.md: perplexity of fp32 vs every artifact on the real corpus, greedy tokens
matched, sizes against fp32 and prefill/decode tokens/s.

The generic report has no columns for these (its tables are image/classifier shaped), so the LLM stages hand this
section to it through ctx.report_sections, which report/markdown.py renders after the generic sections.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.context import Context

TITLE = "Causal LM: perplexity, greedy decoding, tokens/s"


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _inline(text: str) -> str:
    """Generated text on one markdown line (newlines shown as \\n, backticks as quotes)."""
    return text.replace("\n", "\\n").replace("`", "'")


def llm_rows(ctx: Context) -> list[dict]:
    """One row per artifact (plus the fp32 PyTorch reference first); what tests and the markdown both read."""
    llm = ctx.metrics.get("llm", {})
    ref = llm.get("fp32_pytorch", {})
    rows = [{"artifact": "fp32 PyTorch (reference)", "runtime": "pytorch", "precision": "fp32",
             "MB": _f(llm.get("fp32_state_dict_bytes", 0) / 1e6 or None, ".1f"), "vs fp32": "100%",
             "perplexity": _f(ref.get("perplexity"), ".3f"), "ppl vs fp32": "+0.0%", "greedy matched": "-",
             "prefill tok/s": "-", "decode tok/s": "-", "load s": "-", "peak MB": "-"}]
    for a in ctx.artifacts:
        p, b = a.parity or {}, a.bench or {}
        ratio = a.details.get("size_ratio_vs_fp32", 1.0 if a.precision == "fp32" else None)
        matched = p.get("greedy_tokens_matched")
        compared = p.get("greedy_tokens_compared")
        rows.append({
            "artifact": a.name, "runtime": a.runtime, "precision": a.precision,
            "MB": f"{a.bytes / 1e6:.1f}", "vs fp32": _f(ratio, ".1%"),
            "perplexity": _f(p.get("perplexity"), ".3f"), "ppl vs fp32": _f(p.get("perplexity_increase"), "+.1%"),
            "greedy matched": ("/".join(map(str, matched)) + f" of {'/'.join(map(str, compared))}") if matched else "-",
            "prefill tok/s": _f(b.get("prefill_tokens_per_s"), ".1f"),
            "decode tok/s": _f(b.get("decode_tokens_per_s"), ".1f"), "load s": _f(b.get("load_s"), ".2f"),
            "peak MB": _f(b.get("peak_memory_mb"), ".0f")})
    return rows


def llm_section(ctx: Context) -> str:
    from edgekd.report.comparison import table

    llm = ctx.metrics.get("llm", {})
    ref = llm.get("fp32_pytorch", {})
    lines = [f"Perplexity on the first {llm.get('perplexity_tokens')} tokens of `{llm.get('corpus')}` "
             f"(Debian r-cran-janeaustenr), non-overlapping windows of {ref.get('window')} tokens, every artifact "
             "in its own runtime (ExecuTorch runtime for .pte, onnxruntime for .onnx). Greedy matched = leading "
             "tokens equal to the fp32 PyTorch continuation, per prompt.\n", table(llm_rows(ctx))]
    basis = llm.get("size_basis")
    if basis:
        lines.append(f"\nSize vs fp32: {basis}\n")
    threads = llm.get("bench_threads")
    if threads:
        lines.append(f"\nTokens/s measured on this machine (not the device), {threads} threads, best of 3, each "
                     "artifact in a fresh process; peak MB is what loading and running it adds to the process.\n")
    for a in ctx.artifacts:
        lines += grid_lines(a)
    prompts, ref_out = llm.get("prompts") or [], llm.get("fp32_continuations") or []
    if prompts and ref_out:
        lines.append(f"\nPrompt: `{_inline(prompts[0])}`  \nfp32 PyTorch: `{_inline(ref_out[0])}`  ")
        for a in ctx.artifacts:
            conts = (a.parity or {}).get("continuations")
            if conts:
                lines.append(f"{a.name}: `{_inline(conts[0])}`  ")
    return "\n".join(lines) + "\n"


def grid_lines(art) -> list[str]:
    """One line per quantized layer: its grid and max |new grid - source weight| (edgekd.quant.nbits for ONNX,
    edgekd.llm.gguf_source.split_block_offsets for the .pte), folded so the table stays readable."""
    layers = art.details.get("layers")
    grid = art.details.get("source_grid")
    if layers:
        rows = [f"| {name} | {r['bits']}-bit {r['scheme']}, block {r['block']} | {r['max_abs_error']:.3g} |"
                for name, r in layers.items()]
    elif isinstance(grid, dict) and grid.get("layers_max_abs_error"):
        rows = [f"| {name} | int4 symmetric + block constant | {err:.3g} |"
                for name, err in grid["layers_max_abs_error"].items()]
    else:
        return []
    return [f"\n<details><summary>{art.name}: max |new grid - source weight| per layer</summary>\n",
            "| layer | grid | max abs error |", "|---|---|---|", *rows, "\n</details>\n"]


PLOT = "llm_tradeoff"


def tradeoff_plot(ctx: Context, path: Path) -> Path | None:
    """Perplexity increase (and decode tokens/s where benchmarked) against artifact MB, one point per artifact: the
    size/accuracy curve of the run's variants, with the recipe's perplexity budget as a line."""
    from edgekd.report.plots_bench import pyplot, save_png

    points = [(a.bytes / 1e6, 100 * a.parity["perplexity_increase"], (a.bench or {}).get("decode_tokens_per_s"),
               a.name) for a in ctx.artifacts if (a.parity or {}).get("perplexity_increase") is not None]
    if not points:
        return None
    plt = pyplot()
    speed = [p for p in points if p[2]]
    fig, axes = plt.subplots(1, 2 if speed else 1, figsize=(11 if speed else 6, 4), squeeze=False)
    ax = axes[0][0]
    for mb, ppl, _, name in points:
        ax.scatter(mb, ppl, color="tab:blue")
        ax.annotate(name, (mb, ppl), fontsize=7, xytext=(4, 3), textcoords="offset points")
    budget = ctx.budgets.perplexity_increase
    if budget is not None:
        ax.axhline(100 * budget, color="tab:red", linestyle="--", label=f"budget +{100 * budget:.0f}%")
        ax.legend(fontsize=8)
    ax.set(xlabel="artifact MB", ylabel="perplexity vs fp32 PyTorch (%)", title="size vs accuracy")
    if speed:
        ax = axes[0][1]
        for mb, _, tps, name in speed:
            ax.scatter(mb, tps, color="tab:green")
            ax.annotate(name, (mb, tps), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set(xlabel="artifact MB", ylabel="decode tokens/s (this machine)", title="size vs decode speed")
    for ax in axes[0]:  # from zero: ratios read off the plot are the real ones
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]))
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return path


def publish(ctx: Context) -> None:
    """(Re)write the section and its plot; called after verify and after bench so a run that skips bench still
    reports perplexity."""
    plot = tradeoff_plot(ctx, ctx.out_dir / "plots" / f"{PLOT}.png")
    if plot is not None:
        ctx.plots[PLOT] = plot  # report.md's Plots section shows it
    ctx.report_sections[TITLE] = llm_section(ctx)
