"""Per-layer quantization sensitivity: the error each layer alone adds at the model's output when it is quantized.

Method: simulated quantization with torch hooks, one layer at a time, not one PT2E prepare/convert per layer.
A PT2E round trip per layer (export, prepare, calibrate, convert) costs seconds of tracing each; 50 layers x 2
precisions would take many minutes on a 2-core machine, while hooks reuse one eager model and cost one forward pass
per layer. The simulation follows what the backends do for the layer under test:

- int8: weights symmetric per output channel in [-127, 127] (XNNPACK / TensorRT weights), the layer's input and
  output activations per-tensor affine uint8 with min/max ranges observed on the same calibration data (XNNPACK
  quantizes both sides of a conv/linear). The output is quantized before any following ReLU, which slightly
  over-states the error of conv+relu pairs that XNNPACK fuses; rankings are unaffected in practice.
- int4: weight-only, symmetric, groups of 32 along the input dimension (torchao's Int4WeightOnly / 8da4w weight
  layout); activations stay float. Measured for Linear layers only: the backends' int4 kernels are GEMMs.
- fp16: weights and the input activation rounded to half precision.

For each layer and precision we record SQNR (dB) of the final output against the fp32 output, the noise-to-signal
power ratio (the additive error the solver minimises), KL of the softmax outputs (classification / LM logits) or
1-cosine (embeddings), top-1 agreement and the task-metric delta where labels exist, and the layer's weight bytes at
each precision (the solver's costs).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from edgekd.quant.plan import quantizable_layers

METHOD = "hook-simulated: int8 per-channel symmetric weights + per-tensor affine uint8 input/output activations; " \
         "int4 weight-only group 32; fp16 weights+input"
INT4_GROUP = 32


@dataclass
class LayerSensitivity:
    name: str
    kind: str
    params: int
    bytes: dict[str, int]
    sqnr_db: dict[str, float] = field(default_factory=dict)
    nsr: dict[str, float] = field(default_factory=dict)
    kl: dict[str, float] = field(default_factory=dict)
    one_minus_cos: dict[str, float] = field(default_factory=dict)
    top1_agreement: dict[str, float] = field(default_factory=dict)
    metric_delta: dict[str, float] = field(default_factory=dict)


@dataclass
class SensitivityResult:
    task: str
    samples: int
    precisions: list[str]
    method: str
    wall_s: float
    layers: list[LayerSensitivity]
    non_layer_bytes: int
    reference_metric: float | None = None
    metric_name: str | None = None

    def ranked(self, precision: str = "int8") -> list[LayerSensitivity]:
        """Most sensitive first: lowest SQNR at `precision`."""
        return sorted(self.layers, key=lambda layer: layer.sqnr_db.get(precision, math.inf))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.ranked(self.precisions[0])]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SensitivityResult":
        layers = [LayerSensitivity(**layer) for layer in data["layers"]]
        return cls(**{**data, "layers": layers})


# ------------------------------------------------------------------------------------------------ bytes
def weight_bytes(module: torch.nn.Module, precision: str) -> int:
    """Bytes a layer's weight and bias take in an artifact at `precision` (the solver's cost model).

    int8: 1 byte per weight, one fp32 scale per output channel, int32 bias. int4: half a byte per weight plus one
    fp32 scale per group of 32 along the input dimension, fp32 bias. fp16 / fp32: 2 / 4 bytes for everything.
    """
    weight = module.weight
    out_channels = weight.shape[0]
    n_weight = weight.numel()
    n_bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
    if precision == "fp32":
        return 4 * (n_weight + n_bias)
    if precision == "fp16":
        return 2 * (n_weight + n_bias)
    if precision == "int8":
        return n_weight + 4 * out_channels + 4 * n_bias
    if precision == "int4":
        per_row = n_weight // out_channels
        groups = out_channels * -(-per_row // INT4_GROUP)
        return -(-n_weight // 2) + 4 * groups + 4 * n_bias
    raise ValueError(f"unknown precision {precision!r}")


def non_layer_bytes(module: torch.nn.Module, layers: Iterable[str]) -> int:
    """fp32 bytes of every parameter and buffer that is not a quantizable layer's weight or bias (norms, tables)."""
    owned = set()
    for name in layers:
        owned.add(f"{name}.weight")
        owned.add(f"{name}.bias")
    total = 0
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if name not in owned and tensor.dtype.is_floating_point:
            total += tensor.numel() * tensor.element_size()
    return total


# ------------------------------------------------------------------------------------------------ fake quant
def fq_weight_int8(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    scale = (flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0).reshape([-1] + [1] * (w.dim() - 1))
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def fq_weight_int4(w: torch.Tensor, group: int = INT4_GROUP) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    cols = flat.shape[1]
    pad = (-cols) % group
    padded = torch.nn.functional.pad(flat, (0, pad))
    grouped = padded.reshape(flat.shape[0], -1, group)
    scale = grouped.abs().amax(dim=2, keepdim=True).clamp(min=1e-12) / 7.0
    q = torch.clamp(torch.round(grouped / scale), -8, 7) * scale
    return q.reshape(flat.shape[0], -1)[:, :cols].reshape(w.shape)


def fq_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero_point = int(min(255, max(0, round(-lo / scale))))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


@contextmanager
def simulated(module: torch.nn.Module, precision: str, ranges: dict[str, tuple[float, float]] | None = None):
    """Temporarily hold `module` (one layer) at `precision`; restores the fp32 weight on exit."""
    original = module.weight.data
    handles = []
    if precision == "int8":
        module.weight.data = fq_weight_int8(original)
        (in_lo, in_hi), (out_lo, out_hi) = ranges["in"], ranges["out"]
        handles.append(module.register_forward_pre_hook(
            lambda m, args: (fq_activation(args[0], in_lo, in_hi),) + tuple(args[1:])))
        handles.append(module.register_forward_hook(lambda m, args, out: fq_activation(out, out_lo, out_hi)))
    elif precision == "int4":
        module.weight.data = fq_weight_int4(original)
    elif precision == "fp16":
        module.weight.data = original.half().float()
        handles.append(module.register_forward_pre_hook(
            lambda m, args: (args[0].half().float(),) + tuple(args[1:])))
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}")
    try:
        yield module
    finally:
        module.weight.data = original
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------------------------ analysis
def _batches(samples: Sequence[tuple], batch_size: int) -> list[tuple]:
    out = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        out.append(tuple(torch.cat(parts, dim=0) for parts in zip(*chunk)))
    return out


def _forward(module, batches) -> torch.Tensor:
    with torch.no_grad():
        outs = [module(*batch) for batch in batches]
    outs = [o[0] if isinstance(o, (tuple, list)) else o for o in outs]
    return torch.cat([o.float() for o in outs], dim=0)


def observe_ranges(module: torch.nn.Module, layers: list[str], batches) -> dict[str, dict[str, tuple[float, float]]]:
    """Min/max of every layer's input and output over the calibration data (one pass, what observers would see)."""
    modules = dict(module.named_modules())
    ranges: dict[str, dict[str, list[float]]] = {n: {"in": [math.inf, -math.inf], "out": [math.inf, -math.inf]}
                                                  for n in layers}
    handles = []

    def hook(name):
        def record(m, args, out):
            for side, value in (("in", args[0]), ("out", out)):
                r = ranges[name][side]
                r[0] = min(r[0], float(value.min()))
                r[1] = max(r[1], float(value.max()))
        return record

    for name in layers:
        handles.append(modules[name].register_forward_hook(hook(name)))
    try:
        _forward(module, batches)
    finally:
        for handle in handles:
            handle.remove()
    return {n: {side: tuple(v) for side, v in r.items()} for n, r in ranges.items()}


def compare(reference: torch.Tensor, output: torch.Tensor, task: str, labels: torch.Tensor | None) -> dict[str, float]:
    """Error of `output` against the fp32 `reference` (same samples), in the measures the task calls for."""
    ref = reference.reshape(reference.shape[0], -1).double()
    out = output.reshape(output.shape[0], -1).double()
    noise = float(((ref - out) ** 2).sum())
    signal = float((ref ** 2).sum())
    nsr = noise / max(signal, 1e-30)
    result = {"nsr": nsr, "sqnr_db": 10 * math.log10(1 / nsr) if nsr > 0 else math.inf}
    if task == "sentence-embedding":
        cos = torch.nn.functional.cosine_similarity(ref, out, dim=1)
        result["one_minus_cos"] = float((1 - cos).mean())
    else:
        logits_ref, logits_out = reference.double(), output.double()
        p_log = torch.log_softmax(logits_ref, dim=-1)
        q_log = torch.log_softmax(logits_out, dim=-1)
        kl = (p_log.exp() * (p_log - q_log)).sum(dim=-1)
        result["kl"] = float(kl.mean())
        top_ref, top_out = logits_ref.argmax(dim=-1), logits_out.argmax(dim=-1)
        result["top1_agreement"] = float((top_ref == top_out).double().mean())
        if labels is not None and top_out.dim() == 1:
            result["accuracy"] = float((top_out == labels.to(top_out.device)).double().mean())
    return result


def analyze(module: torch.nn.Module, samples: Sequence[tuple], *, task: str, labels: torch.Tensor | None = None,
            precisions: Sequence[str] = ("int8",), layers: Sequence[str] | None = None, batch_size: int = 16,
            progress: Callable[[str], Any] | None = None) -> SensitivityResult:
    """Quantize each layer alone at each precision, run `samples`, measure the error at the final output."""
    module.eval()
    layers = list(layers) if layers is not None else quantizable_layers(module)
    modules = dict(module.named_modules())
    batches = _batches(list(samples), batch_size)
    started = time.perf_counter()
    reference = _forward(module, batches)
    base = compare(reference, reference, task, labels)
    ranges = observe_ranges(module, layers, batches) if "int8" in precisions else {}
    results = []
    for name in layers:
        layer = modules[name]
        entry = LayerSensitivity(name=name, kind=type(layer).__name__, params=layer.weight.numel(),
                                 bytes={p: weight_bytes(layer, p) for p in ("fp32", "fp16", "int8", "int4")})
        for precision in precisions:
            if precision == "int4" and not isinstance(layer, torch.nn.Linear):
                continue  # int4 weight-only kernels (XNNPACK 8da4w, TensorRT) exist for GEMMs only
            with simulated(layer, precision, ranges.get(name)):
                output = _forward(module, batches)
            measured = compare(reference, output, task, labels)
            entry.sqnr_db[precision] = measured["sqnr_db"]
            entry.nsr[precision] = measured["nsr"]
            for key in ("kl", "one_minus_cos", "top1_agreement"):
                if key in measured:
                    getattr(entry, key)[precision] = measured[key]
            if "accuracy" in measured:
                entry.metric_delta[precision] = measured["accuracy"] - base["accuracy"]
            if progress:
                progress(f"{name} {precision}")
        results.append(entry)
    return SensitivityResult(task=task, samples=len(samples), precisions=list(precisions), method=METHOD,
                             wall_s=time.perf_counter() - started, layers=results,
                             non_layer_bytes=non_layer_bytes(module, layers),
                             reference_metric=base.get("accuracy"),
                             metric_name="accuracy" if "accuracy" in base else None)


# ------------------------------------------------------------------------------------------------ outputs
def render_table(result: SensitivityResult, limit: int | None = None):
    """A rich Table, most sensitive layer first."""
    from rich.table import Table

    table = Table(title=f"per-layer sensitivity ({result.samples} samples, {result.wall_s:.1f} s)")
    table.add_column("#", justify="right")
    table.add_column("layer")
    table.add_column("kind")
    for p in result.precisions:
        table.add_column(f"SQNR {p} dB", justify="right")
        table.add_column("KL" if result.task != "sentence-embedding" else "1-cos", justify="right")
        if result.metric_name:
            table.add_column(f"Δacc {p}", justify="right")
    table.add_column("fp32 KB", justify="right")
    table.add_column("int8 KB", justify="right")
    for rank, layer in enumerate(result.ranked(result.precisions[0])[:limit], 1):
        row = [str(rank), layer.name, layer.kind]
        for p in result.precisions:
            sqnr = layer.sqnr_db.get(p)
            row.append(f"{sqnr:.1f}" if sqnr is not None else "-")
            err = layer.kl.get(p) if result.task != "sentence-embedding" else layer.one_minus_cos.get(p)
            row.append(f"{err:.2e}" if err is not None else "-")
            if result.metric_name:
                delta = layer.metric_delta.get(p)
                row.append(f"{delta:+.3f}" if delta is not None else "-")
        row += [f"{layer.bytes['fp32'] / 1e3:.1f}", f"{layer.bytes['int8'] / 1e3:.1f}"]
        table.add_row(*row)
    return table


def bar_chart(result: SensitivityResult, path, top: int = 40):
    """Horizontal bars of SQNR per layer (lowest = most sensitive at the top), one colour per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekd.report.atomic import atomic_path

    ranked = result.ranked(result.precisions[0])[:top]
    height = 0.8 / len(result.precisions)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(ranked) + 1.2)))
    for i, precision in enumerate(result.precisions):
        values = [min(layer.sqnr_db.get(precision, math.nan), 120.0) for layer in ranked]  # nan: not measured
        ax.barh([k + i * height for k in range(len(ranked))], values, height=height, label=precision)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(ranked))])
    ax.set_yticklabels([layer.name for layer in ranked], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR at the model output when only this layer is quantized (dB, lower = more sensitive)")
    ax.set_title(f"per-layer sensitivity, {result.samples} calibration samples")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
