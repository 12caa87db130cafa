"""PT2E quantization: one quantizer per backend, prepare/calibrate/convert, and the guard for HF models.

Every int8 artifact of a run comes from one converted PT2E model, so the .pte, the ONNX and the TensorRT Q/DQ
ONNX carry the same scales (and, after QAT, the learned ones).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch

from edgekd.errors import EdgekdError


class NonFloatGuard:
    """Wraps a quantizer and drops annotations on nodes whose inputs or outputs are not floating point.

    XNNPACKQuantizer annotates `add`/`mul` wherever it finds them, including integer index arithmetic in HF models
    (position ids, attention-mask offsets); quantizing those breaks the graph (docs/architecture.md, "The stack").
    """

    def __init__(self, inner: Any, embeddings: bool = False):
        self.inner = inner
        self.embeddings = embeddings  # also quantize embedding tables (weight-only, per row; quant/dynamic_text.py)
        self.embeddings_quantized: list[str] = []
        self.dropped: list[str] = []
        self.repaired: list[str] = []
        self.clamps_fused: list[str] = []
        self.pads_shared: list[str] = []

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = self.inner.annotate(model)
        self.clamps_fused = fuse_clamp_annotations(model)
        self.pads_shared = share_pad_annotations(model)
        for node in model.graph.nodes:
            if "quantization_annotation" not in node.meta:
                continue
            values = [node] + [a for a in node.args if isinstance(a, torch.fx.Node)]
            if any(not _is_float(v) for v in values):
                del node.meta["quantization_annotation"]
                self.dropped.append(node.name)
        if self.embeddings:  # after the guard: the table is float, its integer indices are never quantized
            from edgekd.quant.dynamic_text import annotate_embeddings

            self.embeddings_quantized = annotate_embeddings(model)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.inner.validate(model)

    def transform_for_annotation(self, model):
        """The inner transform turns scalar operands into float tensor constants so `add`/`mul` can be quantized;
        on integer arithmetic (`arange + 0` in HF mask code) that silently makes an index tensor float. Cast such
        constants back to the integer dtype of the tensor they are combined with."""
        model = self.inner.transform_for_annotation(model)
        clamps_as_hardtanh(model)
        for node in model.graph.nodes:
            if node.op != "get_attr":
                continue
            constant = _get_attr(model, node.target)
            if not isinstance(constant, torch.Tensor) or not constant.dtype.is_floating_point:
                continue
            partners = [a for user in node.users for a in user.args
                        if isinstance(a, torch.fx.Node) and a is not node and not _is_float(a)]
            if partners and constant.numel() == 1 and float(constant).is_integer():
                dtype = partners[0].meta["val"].dtype
                _set_attr(model, node.target, constant.to(dtype))
                self.repaired.append(node.name)
        model.recompile()
        return model

    def __getattr__(self, name):
        return getattr(self.inner, name)


CLAMP_OPS = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default, torch.ops.aten.relu6.default,
             torch.ops.aten.relu6_.default, torch.ops.aten.clamp.default}
CLAMPED_PRODUCERS = {torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default, torch.ops.aten.linear.default,
                     torch.ops.aten.add.Tensor}


def clamps_as_hardtanh(model: torch.fx.GraphModule) -> None:
    """`x.clamp(lo, hi)` with constant bounds is hardtanh(x, lo, hi), the form XNNPACK fuses into the conv before
    it; left as clamp, the quantized conv -> clamp -> q pattern is not partitioned at all and the export fails on
    the portable kernels' missing dequantize_per_channel."""
    for node in model.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.clamp.default and len(node.args) == 3 \
                and all(isinstance(b, (int, float)) for b in node.args[1:]) and not node.kwargs:
            node.target = torch.ops.aten.hardtanh.default


def fuse_clamp_annotations(model: torch.fx.GraphModule) -> list[str]:
    """Quantize Conv/Linear/Add -> ReLU6 (hardtanh / clamp) after the clamp, as XNNPACK and TFLite execute it.

    XNNPACKQuantizer fuses only ReLU into its producer; a ReLU6 is a "shared observer" op, so the conv output is
    observed before the clamp (a range like -30..40 instead of 0..6) and the clamp inherits those coarse steps. On
    EfficientNet-Lite (33 ReLU6) that alone cut top-1 agreement with fp32 to ~0.5. Moving the output spec from the
    producer to the clamp gives the activation its real 0..6 range; the XNNPACK delegate then fuses the clamp into
    the conv as its output min/max. Returns the clamps that were moved.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    moved = []
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in CLAMP_OPS or not node.args:
            continue
        producer = node.args[0]
        if not isinstance(producer, torch.fx.Node) or producer.target not in CLAMPED_PRODUCERS:
            continue
        annotation = producer.meta.get("quantization_annotation")
        if annotation is None or annotation.output_qspec is None or len(producer.users) != 1:
            continue
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={}, output_qspec=annotation.output_qspec, _annotated=True)
        annotation.output_qspec = None
        moved.append(node.name)
    return moved


PAD_OPS = {torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default}


def _is_zero_pad(node: torch.fx.Node) -> bool:
    if node.target == torch.ops.aten.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", None)
        return mode == "constant" and not value
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0.0)
    return not value


def share_pad_annotations(model: torch.fx.GraphModule) -> list[str]:
    """Quantize a zero pad with its input's scale, so it runs in int8 between two int8 ops.

    XNNPACKQuantizer leaves pads alone: EfficientNet's "same" padding (17 pads, one in front of every depthwise
    conv) then ran as dq -> fp32 pad -> q, a Convert and a float copy per block (ETDump: `Constant Pad (ND, X32)`
    beside `Convert (NC)`). Sharing the producer's quantization makes it an int8 pad that XNNPACK folds into the
    next convolution; zero is exact on any int8 grid (it is the zero point). Returns the pads annotated.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec, SharedQuantizationSpec

    key, shared = "quantization_annotation", []
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in PAD_OPS or key in node.meta or not _is_zero_pad(node):
            continue
        producer = node.args[0]
        if not isinstance(producer, torch.fx.Node):
            continue
        annotation = producer.meta.get(key)
        consumer = next(iter(node.users)) if len(node.users) == 1 else None
        wanted = consumer.meta[key].input_qspec_map.get(node) if consumer is not None and key in consumer.meta else None
        if annotation is not None and annotation.output_qspec is not None:
            spec = SharedQuantizationSpec(producer)
            inputs, output = {producer: spec}, spec
        elif isinstance(wanted, QuantizationSpec) and not wanted.is_dynamic:  # a float input (the image) padded
            # for a static int8 conv: quantize before the pad
            inputs, output = {producer: wanted}, SharedQuantizationSpec((producer, node))
        else:
            continue
        node.meta[key] = QuantizationAnnotation(input_qspec_map=inputs, output_qspec=output, _annotated=True)
        shared.append(node.name)
    return shared


def _observed_range(module: torch.nn.Module) -> tuple[float, float] | None:
    """(min, max) a per-tensor activation observer has seen; a QAT fake-quant keeps its observer inside. None for
    anything else (other modules, per-channel weight observers, dynamic placeholders)."""
    observer = getattr(module, "activation_post_process", module)
    lo, hi = getattr(observer, "min_val", None), getattr(observer, "max_val", None)
    if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor) or lo.numel() != 1 or hi.numel() != 1:
        return None
    return float(lo), float(hi)


def unrepresentable_observers(prepared, limit: float = 1e6) -> list[str]:
    """Observer nodes whose observed range exceeds +-`limit` (see drop_unrepresentable_observers)."""
    names = []
    for node in prepared.graph.nodes:
        if node.op == "call_module":
            seen = _observed_range(prepared.get_submodule(node.target))
            if seen is not None and max(abs(seen[0]), abs(seen[1])) > limit:
                names.append(node.name)
    return names


def remove_observers(prepared, names: Iterable[str]) -> list[str]:
    """Take the named observer / fake-quant nodes out of the graph: those tensors stay float (no Q/DQ)."""
    wanted, removed = set(names), []
    for node in list(prepared.graph.nodes):
        if node.op == "call_module" and node.name in wanted:
            node.replace_all_uses_with(node.args[0])
            prepared.graph.erase_node(node)
            removed.append(node.name)
    if removed:
        prepared.graph.eliminate_dead_code()
        prepared.recompile()
    return removed


def drop_unrepresentable_observers(prepared, limit: float = 1e6) -> list[str]:
    """After calibration, remove per-tensor activation observers whose range exceeds +-`limit`; those tensors stay
    in float (no Q/DQ) and the backend runs them in float (TensorRT fp16/fp32, XNNPACK
    and onnxruntime fp32).

    Measured on MiniLM: the additive attention mask (Where -> finfo(float32).min) and every `scores + mask` Add got
    a symmetric int8 scale of 2.7e36, so every attention score quantized to 0 and the converted PT2E model's
    embeddings fell to cosine 0.28 against fp32, while the ONNX matched that model exactly. No int8 grid can hold
    -3.4e38 and the scores beside it; keeping these tensors in float is what TensorRT's own BERT flows do; the XNNPACK
    quantizer has the same problem on every HF encoder.
    Returns the names of the observer nodes removed."""
    return remove_observers(prepared, unrepresentable_observers(prepared, limit))


def drop_unrepresentable_before_training(prepared, samples: Iterable[tuple], limit: float = 1e6) -> list[str]:
    """QAT's form of drop_unrepresentable_observers: the fake-quants must go before the first step (trained through
    a 2.7e36 scale, every attention score is 0), and the training graph's observers must not see the probe, so a
    copy is calibrated on `samples` and the offending nodes are removed from `prepared` by name. Models without such
    tensors (CNNs) train exactly as before."""
    probe = copy.deepcopy(prepared)
    calibrate(probe, samples)
    return remove_observers(prepared, unrepresentable_observers(probe, limit))


def _get_attr(model: torch.nn.Module, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, name)


def _set_attr(model: torch.nn.Module, target: str, value: torch.Tensor) -> None:
    owner, _, name = target.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    if name in getattr(module, "_buffers", {}):
        module._buffers[name] = value
    else:
        setattr(module, name, value)


def _is_float(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    if isinstance(value, torch.Tensor):
        return value.dtype.is_floating_point
    return True  # non-tensor metadata: leave the annotation as the quantizer made it


def make_quantizer(backend: str, *, qat: bool = False, per_channel: bool = True,
                   skip_modules: Iterable[str] = (), module_type_skips: Iterable[type] = (), dynamic: bool = False,
                   embeddings: bool = False):
    """The quantizer for a profile backend; `skip_modules` (exact module names) stay in floating point.

    `dynamic`: int8 weights with activations quantized per call from their live range (XNNPACK's dynamically
    quantized Linear). Transformer encoders need it: a static per-tensor range over the residual stream and the
    attention probabilities cannot hold their outlier channels (MiniLM static: cosine ~0.6 against fp32). With
    `qat`, the Linear inputs are fake-quantized per sample and call (edgekd/quant/dynamic_text.py).
    `embeddings`: embedding tables become int8 weight-only per row (the word embedding is most of a text .pte).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from edgekd.backends import get

    kind = get(backend).quantizer  # the backend record's scheme (edgekd/backends/)
    if dynamic and kind == "symmetric":
        raise EdgekdError("dynamic activation quantization is not available for TensorRT (explicit Q/DQ is static)",
                          key="stages.ptq.activations", hint="allowed for tensorrt: static")
    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat, is_dynamic=dynamic)
    if qat and dynamic:
        from edgekd.quant.dynamic_text import qat_dynamic_config

        config = qat_dynamic_config(config)
    elif qat:
        config = weights_trained_on_the_converted_grid(config)
    if kind == "symmetric":
        config = symmetric_activation_config(config)
    quantizer = XNNPACKQuantizer().set_global(config)
    for name in skip_modules:
        # set_module_name(name, None) asserts "not supported yet", but None is exactly what the annotator honours:
        # a None config annotates nothing for that module and the global config skips every named module.
        quantizer.module_name_config[name] = None
    for module_type in module_type_skips:
        quantizer.set_module_type(module_type, None)
    return NonFloatGuard(quantizer, embeddings=embeddings)


def weights_trained_on_the_converted_grid(config):
    """QAT weight fake-quants that compute their grid the way convert_pt2e will: the unfused FakeQuantize takes
    (scale, zero point) from its observer's calculate_qparams(), which convert reads too.

    The default, FusedMovingAvgObsFakeQuantize, computes per-channel symmetric qparams in its own kernel, and they are
    not the observer's: measured on EfficientNet-Lite0's depthwise convs, scales 0.3-50% apart and nonzero zero
    points, so the weights trained were not the weights exported (fake-quant model vs converted model, output cosine
    0.993 before any training; top-1 agreement with fp32 0.941 in training, 0.910 converted).
    tests/unit/test_qat_converted_grid.py checks the two agree. Activations keep the fused kernel (its per-tensor
    qparams equal the observer's)."""
    from dataclasses import replace

    from torchao.quantization.pt2e.fake_quantize import FakeQuantize

    weight = config.weight
    if weight is None or weight.qscheme != torch.per_channel_symmetric:
        return config
    fused = weight.observer_or_fake_quant_ctr
    partial = getattr(fused, "p", fused)  # with_args wraps a functools.partial
    kwargs = dict(getattr(partial, "keywords", {}))  # the observer class and eps of the default spec
    if "observer" not in kwargs:
        return config
    return replace(config, weight=replace(weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(**kwargs)))


def symmetric_activation_config(config):
    """Make activation specs symmetric with zero point 0 (TensorRT's explicit-quantization rule).

    PT2E builds each observer / fake-quant from the spec's qscheme and range, so changing the spec is enough;
    weights are already symmetric per channel.
    """
    from dataclasses import replace

    def sym(spec):
        if spec is None:
            return None
        return replace(spec, qscheme=torch.per_tensor_symmetric, quant_min=-128, quant_max=127)

    return replace(config, input_activation=sym(config.input_activation),
                   output_activation=sym(config.output_activation))


def export_for_quantization(module: torch.nn.Module, example_inputs: tuple,
                            dynamic_shapes=None) -> torch.fx.GraphModule:
    module.eval()
    return torch.export.export(module, example_inputs, dynamic_shapes=dynamic_shapes, strict=False).module()


def prepare(module: torch.nn.Module, example_inputs: tuple, quantizer, *, qat: bool = False, dynamic_shapes=None):
    """`dynamic_shapes` keeps those axes symbolic in the converted model (TensorRT's optimization profiles)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    graph = export_for_quantization(module, example_inputs, dynamic_shapes)
    return (prepare_qat_pt2e if qat else prepare_pt2e)(graph, quantizer)


def calibrate(prepared: torch.fx.GraphModule, samples: Iterable[tuple], progress=None) -> int:
    count = 0
    with torch.no_grad():
        for sample in samples:
            prepared(*sample)
            count += 1
            if progress:
                progress()
    return count


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return convert_pt2e(prepared)
