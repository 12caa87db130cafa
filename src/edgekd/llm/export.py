"""KV-cache exports of a causal LM: ExecuTorch .pte (static cache, XNNPACK, fp32 or 8da4w) and ONNX (growing
past key/values; fp32, int4 MatMulNBits, int8 dynamic). onnxruntime's quantizers are called through
edgekd.quant.ort, the one module that imports them.

.pte interface (what the ExecuTorch LLM runner expects): forward(input_ids[1, s], cache_position[s]) -> logits
[1, s, vocab]; the cache lives in the program's mutable buffers and is reset by starting at position 0.
ONNX interface: (input_ids[1, s], position_ids[1, s], past_key_i, past_value_i ...) -> (logits, present_key_i,
present_value_i ...), past length 0 for the first call.
"""

from __future__ import annotations

import copy
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.report.atomic import atomic_path

from .models import kv_shape


def quantize_8da4w(model, group_size: int, embedding_quant: str = "int8", gguf: Path | None = None,
                   lm_head_bits: int | None = None, block_offsets: str = "int8", fuse: bool = False,
                   rounding: str = "affine", gptq: dict | None = None):
    """torchao 8da4w on every Linear (int8 dynamic per-token activations, int4 symmetric weights per group) and
    weight-only quantization of nn.Embedding; returns a quantized copy and what was done per module kind.

    With `gguf` (the file the weights were dequantized from), Linears stored as Q4_1 in groups of 32 keep their grid
    exactly (edgekd.llm.gguf_source.split_block_offsets: XNNPACK's int4 groups are symmetric, so each block's
    constant is applied beside the kernel in `block_offsets` precision, int8 or fp32). `lm_head_bits` 8: the lm_head
    gets int8 per-channel weights instead (XNNPACK groups are 4-bit only). Measured in PyTorch on SmolLM2-135M
    (perplexity, Pride and Prejudice 512 tokens, fp32 18.63): plain 8da4w 31.39; scale max(-min/8, max/7)
    (SYMMETRIC_NO_CLIPPING_ERR) 26.80; Q4_1 grid kept 20.71; and int8 lm_head 19.11; lm_head fp32 19.00 (the rest:
    int8 activations, int8 embedding); int8 block constants instead of fp32 19.09.
    `rounding` "hqq": the int4 scales of Linears not on a kept source grid are chosen by torchao's HQQ scale-only
    (SmolLM2 without its source grid, int8 lm_head, PyTorch: 27.92 with absmax scales, 25.35 with HQQ).
    `fuse`: merge q/k/v and gate/up first (edgekd.llm.fuse; for the .pte's direct attention forward), after the
    source grid is split by module name; it changes no quantized weight.
    `gptq` ({module name: edgekd.quant.gptq.GroupQuant}, edgekd.llm.gptq_weights): GPTQ's codes and scales replace
    torchao's rounding in those int4 weights (merged projections take their parts'); the lm_head must have one when
    `lm_head_bits` is 4.
    """
    import torch
    from torchao.quantization import MappingType, quantize_

    from .scheme import rules_8da4w

    q = copy.deepcopy(model).eval()
    hidden = q.config.hidden_size
    linears = [n for n, m in q.named_modules() if isinstance(m, torch.nn.Linear)]
    bad = [n for n in linears if q.get_submodule(n).in_features % group_size]
    if bad:
        raise EdgekdError(f"in_features of {bad[:3]} not divisible by group_size {group_size}", key="llm.group_size",
                          hint="choose 32, 64 or 128 dividing the hidden size")
    details: dict = {"linear_count": len(linears)}
    mapping = MappingType.SYMMETRIC
    if gguf is not None:
        from .gguf_source import linear_types, split_block_offsets

        aligned = [n for n, t in linear_types(q, Path(gguf)).items() if t == "Q4_1" and n != "lm_head"]
        if aligned and group_size == 32:
            errors = split_block_offsets(q, aligned, group_size)
            mapping = MappingType.SYMMETRIC_NO_CLIPPING_ERR
            offsets = ("fp32" if block_offsets == "fp32" else
                       "int8 per output channel, int8 dynamic activations")
            details["source_grid"] = {"gguf": Path(gguf).name, "q4_1_linears": len(aligned),
                                      "method": "w = d (q - 8) + (m + 8 d) per block: int4 group scale d (torchao "
                                                "SYMMETRIC_NO_CLIPPING_ERR), m + 8 d added as blocksum(x) @ r^T "
                                                f"({offsets})", "max_abs_error_vs_source": max(errors.values()),
                                      "layers_max_abs_error": errors, "block_offsets": block_offsets}
        else:
            details["source_grid"] = f"not kept: {len(aligned)} Q4_1 Linears, group_size {group_size} (needs 32)"
    if fuse:
        from .fuse import fuse_projections

        details["fused_projections"] = fuse_projections(q)
    if embedding_quant != "none":
        # padding_idx only masks gradients, but it adds an argument to aten.embedding, and then ExecuTorch's quant
        # fusion does not rewrite dequantize_affine -> embedding into quantized_decomposed.embedding_byte
        # (SmolLM2 has pad_token_id=2): the .pte then fails with "Missing out variants: torchao::dequantize_affine".
        for mod in q.modules():
            if isinstance(mod, torch.nn.Embedding):
                mod.padding_idx = None
    details["embedding"] = "fp32"
    for rule in rules_8da4w(hidden, group_size, embedding_quant, lm_head_bits, mapping, block_offsets,
                            hqq=rounding == "hqq" and mapping == MappingType.SYMMETRIC):
        quantize_(q, rule.config, filter_fn=rule.applies)
        details[rule.kind] = rule.description
    if gptq or lm_head_bits == 4:
        from .gptq_weights import set_torchao_weights

        details["gptq_linears"] = set_torchao_weights(q, gptq or {}, lm_head_bits)
    return q, details


def export_pte(model, path: Path, max_seq_len: int, precision: str = "8da4w", group_size: int = 32,
               embedding_quant: str = "int8", gguf: Path | None = None, lm_head_bits: int | None = None,
               block_offsets: str = "int8", fuse: bool = True, rounding: str = "affine", gptq=None) -> dict:
    """Static-KV-cache .pte lowered to XNNPACK; prefill length is dynamic up to max_seq_len - 1. `gguf`,
    `lm_head_bits`, `block_offsets`, `fuse` (q/k/v and gate/up as one GEMM each), `rounding` and `gptq`: see
    quantize_8da4w."""
    import torch
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    import executorch.kernels.quantized  # noqa: F401 - out variants of quantized_decomposed embedding ops

    from .fuse import fuse_projections
    from .pte_decoder import build_decoder

    details: dict = {"max_seq_len": max_seq_len, "kv_cache": "static", "delegate": "xnnpack"}
    if precision == "8da4w":
        model, qdetails = quantize_8da4w(model, group_size, embedding_quant, gguf, lm_head_bits, block_offsets, fuse,
                                         rounding, gptq)
        details.update(qdetails)
    elif precision == "fp32":
        model = copy.deepcopy(model)
        if fuse:
            details["fused_projections"] = fuse_projections(model)
    else:
        raise EdgekdError(f"unknown .pte precision {precision!r}", key="llm.pte_variants", hint="allowed: fp32, 8da4w")

    decoder, how = build_decoder(model, max_seq_len)
    details["attention"] = (f"llama::custom_sdpa over a [1, max_len, kv_heads, head_dim] cache (llama::update_cache); "
                            f"{how}")
    seq = torch.export.Dim("seq", min=1, max=max_seq_len - 1)
    example = (torch.zeros((1, 8), dtype=torch.long), torch.arange(8))
    with torch.no_grad():
        program = torch.export.export(decoder, example, dynamic_shapes=({1: seq}, {0: seq}), strict=False)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    try:
        from executorch.devtools.backend_debug import get_delegation_info

        info = get_delegation_info(edge.exported_program().graph_module)
        details["delegated_nodes"] = info.num_delegated_nodes
        details["non_delegated_nodes"] = info.num_non_delegated_nodes
        details["delegated_subgraphs"] = info.num_delegated_subgraphs
        outside = {op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated}
        details["non_delegated_ops"] = dict(sorted(outside.items(), key=lambda kv: -kv[1]))
    except Exception as exc:  # noqa: BLE001 - delegation stats are informative, not required
        details["delegation_info_error"] = str(exc)[:200]
    et = edge.to_executorch(ExecutorchBackendConfig(
        extract_delegate_segments=True, do_quant_fusion_and_const_prop=True,
        memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
        sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass()))
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(et.buffer)
    details["precision"] = precision
    return details


def onnx_io_names(config) -> tuple[list[str], list[str]]:
    layers, _, _ = kv_shape(config)
    past = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return ["input_ids", "position_ids", *past], ["logits", *present]


def export_onnx_fp32(model, path: Path, max_seq_len: int, opset: int = 18, attention: str = "gqa") -> dict:
    """torch.onnx.export(dynamo=True) with dynamic sequence and past lengths; one file (external_data=False).
    `attention`: edgekd.llm.onnx_decoder ("gqa": onnxruntime's GroupQueryAttention; "standard": standard ops)."""
    import torch

    from .fuse import fuse_projections
    from .onnx_decoder import build_onnx_decoder

    layers, kv_heads, head_dim = kv_shape(model.config)
    model = copy.deepcopy(model)
    fused = fuse_projections(model) if attention == "gqa" else None  # fewer, larger MatMuls; the forward splits
    wrapper = build_onnx_decoder(model, attention)
    inputs, outputs = onnx_io_names(model.config)
    ids = torch.zeros((1, 4), dtype=torch.long)
    pos = torch.arange(3, 7)[None]
    past = [torch.zeros((1, kv_heads, 3, head_dim)) for _ in range(2 * layers)]
    seq = torch.export.Dim("seq", min=1, max=max_seq_len)
    past_len = torch.export.Dim("past", min=0, max=max_seq_len)
    dynamic = {"input_ids": {1: seq}, "position_ids": {1: seq}, "past": tuple({2: past_len} for _ in past)}
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.onnx")  # the exporter wants an .onnx name
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (ids, pos, *past), str(tmp), dynamo=True, opset_version=opset,
                              external_data=False, input_names=inputs, output_names=outputs,
                              dynamic_shapes=dynamic, verbose=False)
        import onnx

        from edgekd.export.onnx import drop_source_traces

        model = onnx.load(str(tmp))
        if drop_source_traces(model):
            onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    how = ("com.microsoft GroupQueryAttention (onnxruntime contrib op)" if attention == "gqa" else
           "transformers' attention in standard ONNX ops")
    return {"opset": opset, "kv_cache": "past/present inputs and outputs", "layers": layers,
            "kv_heads": kv_heads, "head_dim": head_dim, "precision": "fp32", "attention": how,
            "fused_projections": fused}


def _module_of(node) -> str:
    """'model.layers.0.mlp.down_proj' for a node scoped 'model.layers.0.mlp.down_proj/linear_6'."""
    return _scope(node).split("/")[0]


INT4_GRIDS = ("source", "symmetric", "hqq", "gptq")


def quantize_onnx_int4(src: Path, dst: Path, block_size: int = 32, grid: str = "source", gguf: Path | None = None,
                       accuracy_level: int = 4, lm_head_bits: int | None = None,
                       embedding_bits: int | None = None, gptq: dict | None = None) -> dict:
    """Weight-only int4 on every MatMul with a constant weight: onnxruntime's MatMulNBits.

    grid "source": each weight keeps the grid its GGUF source already has (edgekd.llm.gguf_source; Q4_1 -> 4-bit
    min/max affine in blocks of 32, exact), min/max affine when there is no GGUF; the tied lm_head is quantized to
    `lm_head_bits` when set (8 reproduces a Q8_0 embedding). grid "symmetric": onnxruntime's
    MatMulNBitsQuantizer, symmetric per block (before: SmolLM2 perplexity 18.63 -> 23.88). grid "hqq": symmetric
    codes with HQQ-optimized scales (edgekd.quant.nbits "hqq", the .pte's rounding too), for sources without a grid.
    accuracy_level 4: int8 activations per block inside the kernel (VNNI / AVX2 int8 dot products); 0: fp32.
    embedding_bits 8 (grid "source"): the token embedding becomes GatherBlockQuantized, 8-bit symmetric per block
    (exact on a Q8_0 table), sharing its codes with an 8-bit tied lm_head. grid "gptq" and a 4-bit lm_head: the
    codes and scales in `gptq` ({module name: GroupQuant}, edgekd.llm.gptq_weights) are written as they are (a 4-bit
    head leaves the embedding its own table).
    Measured on SmolLM2-135M (tools/llm_int4_measure.py; perplexity on 512 tokens of Pride and Prejudice, fp32 ONNX
    18.625, 542.8 MB): symmetric 23.88 (184 MB); source grid, accuracy_level 0: 18.625 (199 MB, weights exact);
    accuracy_level 4: 18.638; with 8-bit lm_head and embedding: 18.698 (122 MB, 22.5%).
    """
    import onnx

    from edgekd.quant import ort as ort_quant

    if grid not in INT4_GRIDS:
        raise EdgekdError(f"unknown int4 grid {grid!r}", key="llm.int4_grid", hint=f"allowed: {', '.join(INT4_GRIDS)}")
    details: dict = {"precision": "int4", "accuracy_level": accuracy_level}
    if grid == "symmetric":
        ort_quant.matmul_nbits(src, dst, block_size, symmetric=True, accuracy_level=accuracy_level)
        details["method"] = f"MatMulNBits weight-only, symmetric, block {block_size} (onnxruntime quantizer)"
    else:
        from edgekd.quant.nbits import matmul_nbits_from_plan

        from .gguf_source import source_grids

        model = onnx.load(str(src))
        weights = {i.name for i in model.graph.initializer}
        producers = {o: n for n in model.graph.node for o in n.output}
        modules = {}
        for node in model.graph.node:
            if node.op_type != "MatMul":
                continue
            b = node.input[1]
            tied = b in producers and producers[b].op_type == "Transpose" and producers[b].input[0] in weights
            if b in weights or tied:
                modules[node.name] = _module_of(node)
        plan, why = source_grids(modules, Path(gguf) if gguf and grid == "source" else None, block_size,
                                 {"hqq": "hqq", "gptq": "symmetric"}.get(grid, "affine-min"), lm_head_bits)
        fixed = {}
        if gptq or lm_head_bits == 4:
            from edgekd.quant.nbits import gptq_block_quant

            from .gptq_weights import quant_for

            for node, module in modules.items():
                quant = quant_for(module, gptq or {}, lm_head_bits) if node in plan else None
                if quant is not None:
                    fixed[node] = gptq_block_quant(quant)
                    plan[node], why[node] = (4, block_size, "gptq"), "4-bit symmetric, GPTQ on calibration text"
        scopes = {n.name: _module_of(n) for n in model.graph.node if n.op_type == "Gather"}
        report = matmul_nbits_from_plan(model, plan, accuracy_level, embedding_bits, block_size, fixed)
        modules.update({n: scopes[n] for n in report if n not in why})
        why.update({n: "token embedding: 8-bit symmetric (GGUF Q8_0's grid)" for n in report if n not in why})
        with atomic_path(Path(dst)) as tmp:
            onnx.save_model(model, str(tmp))
        details["method"] = ("MatMulNBits weight-only, symmetric codes with HQQ-optimized block scales (torchao "
                             f"HQQ scale-only), block {block_size}" if grid == "hqq" else
                             "MatMulNBits weight-only, symmetric codes and block scales rounded by GPTQ on calibration "
                             f"text (edgekd/llm/gptq_weights.py), block {block_size}" if grid == "gptq" else
                             "MatMulNBits weight-only on the source's grid: GGUF Q4_1 -> 4-bit min/max affine "
                             "(scale d, minimum added per block beside the kernel), Q8_0 -> 8-bit symmetric; block "
                             f"{block_size}" + (f"; source {Path(gguf).name}" if gguf else "; no GGUF source"))
        details["layers"] = {modules[n]: {**r, "why": why[n]} for n, r in report.items()}
        details["max_abs_error_vs_source"] = max((r["max_abs_error"] for r in report.values()), default=0.0)
        if not lm_head_bits:
            details["lm_head"] = "fp32 (llm.lm_head_bits not set)"
        details["embedding"] = f"{embedding_bits}-bit GatherBlockQuantized" if embedding_bits else "fp32"
    out = onnx.load(str(dst), load_external_data=False)
    details.update({"MatMulNBits": sum(n.op_type == "MatMulNBits" for n in out.graph.node),
                    "MatMul_left_float": sum(n.op_type == "MatMul" and not n.name.endswith("_nbits_offset")
                                             for n in out.graph.node)})
    return details


# onnxruntime's dynamic int8 on an LLM, measured on SmolLM2-135M (perplexity, first 512 tokens of Pride and Prejudice,
# fp32 18.62; this AVX2 host without VNNI):
#   s8 weights per channel, full range (the old setting)             839128   garbage
#   the same file, session.x64quantprecision=1 (exact U8U8 kernels)    30.8   -> the garbage is the u8 x s8 kernel:
#     without VNNI it sums pairs of u8*s8 products in int16 with saturation (VPMADDUBSW); a skewed activation range
#     puts the zero point near 255 and per-channel scaling puts every column's largest weight at +-127, so
#     255*127*2 > 32767 overflows all over the network.
#   s8 per channel, reduce_range (7-bit weights: 255*64*2 < 32767)     29.41  (+58%)
#   ... and the gated-MLP output projections (down_proj) left fp32    19.70  (+5.8%; int4 MatMulNBits: 23.88)
# The rest of the loss is DynamicQuantizeLinear's one scale per tensor: the first token carries "massive
# activations" into down_proj (layer 11: 2792 at token 0, at most 7.6 on the 254 others), so the scale set by token 0
# rounds every other token to a few levels. Those MatMuls' inputs are the products of the gated MLP; they stay fp32
# (file 304 MB instead of 225 MB; prefill ~720 vs ~800 tok/s, decode within this shared box's noise). Measured
# alternative, not used: MatMulNBits bits=8, accuracy_level=4 (per-block int8 activations) 18.64, 237 MB, but prefill
# ~400 tok/s. The tied embedding/lm_head stays fp32 in every variant (a Transpose feeds the lm_head MatMul).
INT8_METHOD = ("onnxruntime quantize_dynamic: int8 weights per channel with reduce_range (7-bit, no int16 "
               "saturation on CPUs without VNNI), activations quantized per tensor at run time; gated-MLP output "
               "projections left fp32 (massive activations)")


def _scope(node) -> str:
    """Where a dynamo-exported node came from, 'model.layers.0.mlp.down_proj/linear_6' (module/aten call), for
    reports; the node name when the exporter left no name scopes."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            if len(scopes) >= 2:
                return f"{scopes[-2].removeprefix('lm.')}/{scopes[-1]}"
    return node.name


def gated_mlp_outputs(model) -> list:
    """MatMuls with a constant weight whose input is a gated product Mul(act(gate(x)), up(x)), i.e. the down_proj
    of SwiGLU/GeGLU MLPs: the input that carries LLMs' massive activations. Found by structure, not by name, so it
    holds for any architecture exported by export_onnx_fp32."""
    weights = {i.name for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}

    def from_weight_matmul(name: str, depth: int = 3) -> bool:
        node = producer.get(name)
        if node is None or depth == 0:
            return False
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights:
            return True
        return node.op_type in ("Mul", "Sigmoid", "Gelu", "Tanh", "Erf", "Div", "Add", "Split") and any(
            from_weight_matmul(i, depth - 1) for i in node.input)

    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        gate = producer.get(node.input[0])
        if gate is not None and gate.op_type == "Mul" and len(gate.input) == 2 and all(
                from_weight_matmul(i) for i in gate.input):
            found.append(node)
    return found


def quantize_onnx_int8(src: Path, dst: Path) -> dict:
    """Dynamic int8 on MatMul/Gemm with a constant weight (see the measurements above INT8_METHOD); what was left in
    fp32 is returned with its reason (docs/architecture.md, rule 6)."""
    import onnx

    from edgekd.quant import ort as ort_quant

    model = onnx.load(str(src), load_external_data=False)
    keep = gated_mlp_outputs(model)
    weights = {i.name for i in model.graph.initializer}
    other_float = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] not in weights]
    del model
    ort_quant.dynamic_int8_matmuls(src, dst, nodes_to_exclude=[n.name for n in keep], reduce_range=True)
    out = onnx.load(str(dst), load_external_data=False)
    counts = {"MatMulInteger": sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in out.graph.node),
              "MatMul_left_float": sum(n.op_type == "MatMul" for n in out.graph.node)}
    left = {"gated-MLP output projection: massive activations, one activation scale per tensor":
            [_scope(n) for n in keep],
            "no constant weight (the lm_head tied to the embedding reads it through a Transpose; attention scores "
            "and values when the attention is in standard ops)": [_scope(n) for n in other_float]}
    return {"precision": "int8", "method": INT8_METHOD, "weights": "s8 per channel, reduce_range (7-bit)",
            **counts, "left_float": left}
