"""Block-quantized weights for onnxruntime's MatMulNBits, written from numpy so the grid is ours to choose.

Why not only onnxruntime's MatMulNBitsQuantizer (src/edgekd/quant/ort.py, `matmul_nbits`): a model that arrives as
GGUF Q4_1 already lies on a 4-bit grid, w = d * q + m per block of 32 (q in 0..15, m a free fp16 minimum). Rounding
it again onto a symmetric grid compounds two roundings (SmolLM2-135M: perplexity 18.63 -> 23.88). The grids here:

- "affine-min" (GGUF Q4_1, Q5_1): scale = (max - min) / (2^bits - 1), codes = round((w - min) / scale), offset =
  min. llama.cpp's reference quantizer puts each block's minimum on code 0 and its maximum on the top code, so on
  a Q4_1 source this recovers d, m and q, and the weights exactly (up to fp32 rounding of (max - min) / 15).
  MatMulNBits' zero point is an integer code (a float zero point is accepted but runs onnxruntime's unpacked
  fallback, about 20x slower per token, measured), so the free minimum is applied beside the kernel, with the
  kernel's default zero point 2^(bits-1) and no zero-point input: y = MatMulNBits(x; q, d) + blocksum(x) @ r^T,
  r = m + 2^(bits-1) d, blocksum(x) = x summed over each block of 32 inputs (one Reshape + ReduceSum per distinct
  input, a MatMul of 1/32 of the size). An explicit zero-point input, even all zeros, takes onnxruntime's
  zero-point kernels: 4-bit 576 x 1536 decode GEMVs 0.13 vs 0.10 ms on SmolLM2 (AVX-512 VNNI, accuracy_level 4).
- "affine-int" (onnxruntime's own asymmetric): integer zero point round(-min / scale); nothing beside the kernel,
  not exact on a Q4_1 grid.
- "symmetric" (GGUF Q8_0, Q4_0-like, onnxruntime's default): scale = absmax / (2^(bits-1) - 1), zero point
  2^(bits-1). On a Q8_0 source this is exact (the absmax element holds code +-127).
- "gptq" (passed in as `fixed`): symmetric codes and scales GPTQ chose on calibration inputs (edgekd.quant.gptq).
- "hqq" (no source grid to keep): symmetric codes with each block's scale chosen by half-quadratic optimization
  (torchao's HQQ scale-only, the same function the .pte's torchao 8da4w calls with intx_choose_qparams_algorithm
  hqq_scale_only), so both artifacts get the same weights; no zero-point input.

Each layer's max |dequantized new grid - source weight| is returned for the report (docs/architecture.md, rule 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.errors import EdgekdError

SCHEMES = ("affine-min", "affine-int", "symmetric", "hqq")


@dataclass(frozen=True)
class BlockQuant:
    """One weight [N, K] on a block grid along K (the input dimension, as GGUF and MatMulNBits both block it)."""

    codes: np.ndarray    # uint8 [N, K], 0 .. 2^bits - 1
    scales: np.ndarray   # float32 [N, K // block]
    zero_points: np.ndarray  # uint8 [N, K // block], integer codes
    offsets: np.ndarray | None  # float32 [N, K // block]: added per block beside the kernel ("affine-min")
    bits: int
    block: int
    scheme: str

    def dequantize(self) -> np.ndarray:
        rep = lambda a: np.repeat(a, self.block, axis=1)  # noqa: E731
        w = (self.codes.astype(np.float32) - rep(self.zero_points.astype(np.float32))) * rep(self.scales)
        return w + rep(self.offsets) if self.offsets is not None else w


def quantize_blocks(w: np.ndarray, bits: int, block: int, scheme: str) -> BlockQuant:
    """`w` float [N, K] onto the `scheme` grid (module docstring), blocks of `block` along K."""
    if scheme not in SCHEMES:
        raise EdgekdError(f"unknown block-quantization scheme {scheme!r}", hint=f"allowed: {', '.join(SCHEMES)}")
    if bits not in (4, 8):
        raise EdgekdError(f"MatMulNBits bits {bits} not supported here", hint="allowed: 4, 8")
    n, k = w.shape
    if k % block:
        raise EdgekdError(f"input size {k} is not a multiple of the block size {block}", hint="choose 32, 64 or 128")
    wb = w.astype(np.float32).reshape(n, k // block, block)
    top = 2 ** bits - 1
    if scheme == "hqq":
        import torch
        from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_scale_only_hqq

        half = 2 ** (bits - 1)
        q, scales = _choose_qparams_and_quantize_scale_only_hqq(torch.from_numpy(wb.reshape(n, k)), [1, block],
                                                                 -half, half - 1)
        codes = q.numpy().reshape(n, k // block, block) + half
        scales = scales.float().numpy().reshape(n, k // block)
        zps = np.full(scales.shape, half, np.uint8)
        offsets = None
    elif scheme == "symmetric":
        half = 2 ** (bits - 1)
        scales = np.abs(wb).max(-1) / (half - 1)
        safe = np.where(scales == 0, 1.0, scales)[..., None]
        codes = np.clip(np.rint(wb / safe) + half, 0, top)
        zps = np.full(scales.shape, half, np.uint8)
        offsets = None
    else:
        lo, hi = wb.min(-1), wb.max(-1)
        if scheme == "affine-int":
            lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)  # an integer zero point needs 0 on the grid
        scales = (hi - lo) / top
        safe = np.where(scales == 0, 1.0, scales)
        if scheme == "affine-int":
            zps = np.clip(np.rint(-lo / safe), 0, top).astype(np.uint8)
            codes = np.clip(np.rint(wb / safe[..., None]) + zps[..., None], 0, top)
            offsets = None
        else:
            half = 2 ** (bits - 1)  # the kernel's default zero point: no zero-point input (module docstring)
            zps = np.full(scales.shape, half, np.uint8)
            codes = np.clip(np.rint((wb - lo[..., None]) / safe[..., None]), 0, top)
            offsets = (lo + half * scales).astype(np.float32)
    return BlockQuant(codes.reshape(n, k).astype(np.uint8), scales.astype(np.float32), zps, offsets, bits, block,
                      scheme)


def gptq_block_quant(quant) -> BlockQuant:
    """An edgekd.quant.gptq.GroupQuant (signed codes) in MatMulNBits' terms: codes + 2^(bits-1), the kernel's default
    zero point, no offsets."""
    half = 2 ** (quant.bits - 1)
    return BlockQuant((quant.codes.astype(np.int16) + half).astype(np.uint8), quant.scales,
                      np.full(quant.scales.shape, half, np.uint8), None, quant.bits, quant.group, "gptq")


def _pack(q: BlockQuant) -> tuple[np.ndarray, np.ndarray]:
    """(B [N, blocks, block * bits / 8], zero points) in MatMulNBits' layout: 4-bit codes two per byte, the even
    element in the low nibble; 4-bit zero points packed the same way along each row, padded to whole bytes."""
    n, k = q.codes.shape
    blocks = k // q.block
    if q.bits == 8:
        return q.codes.reshape(n, blocks, q.block), q.zero_points.reshape(-1)
    c = q.codes
    b = (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8).reshape(n, blocks, q.block // 2)
    z = q.zero_points
    if blocks % 2:
        z = np.concatenate([z, np.zeros((n, 1), np.uint8)], axis=1)
    return b, (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)


def _weight_of(node, inits, producers) -> tuple[np.ndarray | None, str]:
    """The constant [N, K] weight of a MatMul (x @ B with B [K, N] an initializer, or Transpose(W [N, K]) as a tied
    lm_head reads the embedding), and where it came from."""
    from onnx import numpy_helper

    b = node.input[1]
    if b in inits:
        return numpy_helper.to_array(inits[b]).T, b
    prod = producers.get(b)
    if prod is not None and prod.op_type == "Transpose" and prod.input[0] in inits:
        perm = [list(a.ints) for a in prod.attribute if a.name == "perm"]
        w = numpy_helper.to_array(inits[prod.input[0]])
        if w.ndim == 2 and perm in ([], [[1, 0]]):
            return w, f"Transpose({prod.input[0]})"
    return None, ""


def matmul_nbits_from_plan(model, plan: dict, accuracy_level: int = 0, embedding_bits: int | None = None,
                           block: int = 32, fixed: dict | None = None) -> dict:
    """Replace each MatMul named in `plan` ({node name: (bits, block, scheme)}) by MatMulNBits on that grid, in place
    on the onnx ModelProto. Returns {node name: {"source", "bits", "scheme", "max_abs_error", ...}}.

    `embedding_bits` 8: every Gather from a 2-D float table (the token embedding) becomes GatherBlockQuantized,
    symmetric 8-bit in blocks of `block` (exact on a GGUF Q8_0 table); a tied lm_head already written on that grid
    shares its codes (one copy of the table in the file). `fixed` ({node name: BlockQuant}): weights already
    rounded elsewhere (GPTQ, edgekd.quant.gptq), written as given."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    new_nodes, new_inits, report = [], [], {}
    blocksums: dict[tuple[str, int], str] = {}
    shared: dict[tuple[str, int], str] = {}  # (table initializer, block) -> its 8-bit symmetric MatMulNBits B
    for node in g.node:
        if node.name not in plan or node.op_type != "MatMul":
            new_nodes.append(node)
            continue
        bits, block, scheme = plan[node.name]
        w, source = _weight_of(node, inits, producers)
        if w is None:
            raise EdgekdError(f"MatMul {node.name} has no constant weight to quantize")
        n, k = w.shape
        q = (fixed or {}).get(node.name) or quantize_blocks(w, bits, block, scheme)
        err = float(np.abs(q.dequantize() - w).max())
        b, zp = _pack(q)
        base = f"{node.name}_nbits"
        new_inits += [numpy_helper.from_array(b, f"{base}_B"),
                      numpy_helper.from_array(q.scales.reshape(-1), f"{base}_scales")]
        inputs = [node.input[0], f"{base}_B", f"{base}_scales"]
        if (q.zero_points != 2 ** (bits - 1)).any():  # only "affine-int" needs the (slower) zero-point input
            new_inits.append(numpy_helper.from_array(zp, f"{base}_zp"))
            inputs.append(f"{base}_zp")
        x, y = node.input[0], node.output[0]
        kernel_out = f"{base}_y" if q.offsets is not None else y
        new_nodes.append(helper.make_node(
            "MatMulNBits", inputs, [kernel_out], name=base,
            domain="com.microsoft", K=k, N=n, bits=bits, block_size=block, accuracy_level=accuracy_level))
        if q.offsets is not None:
            key = (x, block)
            if key not in blocksums:  # q/k/v (and gate/up) read the same input: one block sum for all of them
                shape = f"{base}_bs_shape"
                new_inits.append(numpy_helper.from_array(np.array([0, 0, k // block, block], np.int64), shape))
                new_nodes += [helper.make_node("Reshape", [x, shape], [f"{base}_xb"], name=f"{base}_reshape"),
                              helper.make_node("ReduceSum", [f"{base}_xb", f"{base}_axis"], [f"{base}_xs"],
                                               name=f"{base}_blocksum", keepdims=0)]
                new_inits.append(numpy_helper.from_array(np.array([-1], np.int64), f"{base}_axis"))
                blocksums[key] = f"{base}_xs"
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(q.offsets.T), f"{base}_offsets"))
            new_nodes += [helper.make_node("MatMul", [blocksums[key], f"{base}_offsets"], [f"{base}_off_y"],
                                           name=f"{base}_offset"),
                          helper.make_node("Add", [kernel_out, f"{base}_off_y"], [y], name=f"{base}_add")]
        if bits == 8 and scheme == "symmetric" and source.startswith("Transpose("):
            shared[(source[len("Transpose("):-1], block)] = f"{base}_B"
        report[node.name] = {"source": source, "bits": bits, "block": block, "scheme": scheme, "N": n, "K": k,
                             "max_abs_error": err, "max_abs_weight": float(np.abs(w).max())}
    outputs = {o.name for o in g.output}
    new_nodes = _live(new_nodes, outputs)
    if embedding_bits:
        new_nodes = _live(_quantize_gathers(new_nodes, new_inits, inits, shared, embedding_bits, block, report),
                          outputs)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    used = {i for node in g.node for i in node.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return report


def _live(nodes: list, outputs: set) -> list:
    """Drop nodes nothing reads any more (the Transpose of a tied lm_head once the head reads its own codes)."""
    while True:
        used = {i for node in nodes for i in node.input} | outputs
        live = [node for node in nodes if any(o in used for o in node.output)]
        if len(live) == len(nodes):
            return live
        nodes = live


def _quantize_gathers(nodes: list, new_inits: list, inits: dict, shared: dict, bits: int, block: int,
                      report: dict) -> list:
    """Gather(table [V, K] float initializer, ids) -> Reshape(GatherBlockQuantized(codes [V, K/block, block]))."""
    from onnx import helper, numpy_helper

    if bits != 8:
        raise EdgekdError(f"embedding bits {bits} not supported here", hint="allowed: 8")
    out = []
    for node in nodes:
        table = node.input[0] if node.op_type == "Gather" else None
        init = inits.get(table) if table else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        readers = [n for n in nodes if table in n.input]
        if init is None or len(init.dims) != 2 or axis != 0 or init.data_type != 1 or len(readers) > 1:
            out.append(node)  # another reader (a tied fp32 lm_head) keeps the float table in the file anyway
            continue
        w = numpy_helper.to_array(init)
        v, k = w.shape
        q = quantize_blocks(w, bits, block, "symmetric")
        base = f"{node.name}_gbq"
        codes = shared.get((table, block))
        if codes is None:
            codes = f"{base}_B"
            new_inits.append(numpy_helper.from_array(q.codes.reshape(v, k // block, block), codes))
        new_inits += [numpy_helper.from_array(q.scales.reshape(v, k // block, 1), f"{base}_scales"),
                      numpy_helper.from_array(np.array([0, 0, k], np.int64), f"{base}_shape")]
        out += [helper.make_node("GatherBlockQuantized", [codes, node.input[1], f"{base}_scales"], [f"{base}_y"],
                                 name=base, domain="com.microsoft", gather_axis=0, quantize_axis=2,
                                 block_size=block, bits=bits),
                helper.make_node("Reshape", [f"{base}_y", f"{base}_shape"], [node.output[0]], name=f"{base}_reshape")]
        report[node.name] = {"source": table, "bits": bits, "block": block, "scheme": "symmetric", "N": v, "K": k,
                             "max_abs_error": float(np.abs(q.dequantize() - w).max()),
                             "max_abs_weight": float(np.abs(w).max()), "shares_lm_head_codes": codes != f"{base}_B"}
    return out
