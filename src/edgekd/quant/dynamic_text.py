"""Dynamic int8 for text encoders: QAT with per-call activation ranges and a weight-only int8 word embedding.

Why dynamic: a static per-tensor int8 range over a transformer's residual stream cannot hold its outlier channels
(MiniLM sentiment student: static PTQ -0.6 points, static QAT+KD -2.35 points against fp32 on 2,000 snippets).
XNNPACK's dynamically quantized Linear takes fp32 inputs and quantizes them per call, so every residual add,
LayerNorm and softmax stays float by construction, and onnxruntime's dynamic quantization does the same
(DynamicQuantizeLinear + MatMulInteger). Nothing but the Linear inputs is quantized.

QAT: XNNPACK's `is_qat=True, is_dynamic=True` config fake-quantizes with a min/max observer whose range the
observer freeze of the last epoch would fix to one batch, and torchao's convert_pt2e cannot turn that fake-quant
into choose_qparams ("No chose qparams node found"). So training uses DynamicFakeQuant below (the range of each
sample, every call, as the .pte and onnxruntime compute it at batch 1), and after training the trained float
weights are quantized by the same dynamic PTQ as the ptq stage (`trained_float_copy` + pt2e.prepare/convert): the
weights QAT trained against a per-channel int8 grid are rounded onto that grid.

Embedding: 47 MB of the 52 MB MiniLM-L3 .pte was the fp32 word embedding (30522 x 384). `annotate_embeddings`
gives every aten.embedding weight torchao's per-row uint8 spec (EmbeddingQuantizer's); ExecuTorch's quant fusion
(edgekd/export/executorch.py) rewrites dequantize -> embedding into quantized_decomposed.embedding_byte, whose
kernels the pip runtime registers with `import executorch.kernels.quantized` (edgekd/runtime/__init__.py).
"""

from __future__ import annotations

import functools

import torch


class DynamicFakeQuant(torch.nn.Module):
    """Fake-quantize each sample of a batch onto int8 with its own asymmetric per-tensor range, every call.

    What the exported model does at batch 1 (PT2E's choose_qparams + quantize_per_tensor, onnxruntime's
    DynamicQuantizeLinear); XNNPACK's qd8 kernels are per row, finer still. There is no state to learn or freeze, so
    `disable_observer` and eval mode do not change it. Gradients pass straight through (per-channel fake-quant
    on axis 0, inside the range).
    """

    is_dynamic = True  # read by PT2E's prepare like an observer's attributes
    qscheme = torch.per_tensor_affine

    def __init__(self, dtype=torch.int8, quant_min: int = -128, quant_max: int = 127, eps: float = 2 ** -12, **_):
        super().__init__()
        self.dtype, self.quant_min, self.quant_max, self.eps = dtype, quant_min, quant_max, eps

    @classmethod
    def with_args(cls, **kwargs):
        return functools.partial(cls, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or not x.dtype.is_floating_point:
            return x
        flat = x.detach().reshape(x.shape[0], -1)
        lo, hi = flat.amin(1).clamp(max=0), flat.amax(1).clamp(min=0)
        scale = ((hi - lo) / (self.quant_max - self.quant_min)).clamp(min=self.eps).float()
        zero = (self.quant_min - torch.round(lo / scale)).clamp(self.quant_min, self.quant_max).to(torch.int32)
        return torch.fake_quantize_per_channel_affine(x, scale, zero, 0, self.quant_min, self.quant_max)


def qat_dynamic_config(config):
    """XNNPACK's dynamic QAT config with DynamicFakeQuant on the Linear inputs (the weights keep their per-channel
    fake-quant)."""
    from dataclasses import replace

    act = replace(config.input_activation, observer_or_fake_quant_ctr=DynamicFakeQuant)  # prepare calls with_args
    return replace(config, input_activation=act)


def annotate_embeddings(model: torch.fx.GraphModule) -> list[str]:
    """Give every aten.embedding weight torchao's per-row uint8 weight-only spec (float scale and zero point per
    row); returns the embedding nodes annotated. Indices are never quantized, only the table."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import get_embedding_operators_config

    spec = get_embedding_operators_config().config.weight
    done = []
    for node in model.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.embedding.default \
                and isinstance(node.args[0], torch.fx.Node) and node.args[0].op == "get_attr":
            node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={node.args[0]: spec},
                                                                          _annotated=True)
            done.append(node.name)
    return done


def trained_float_copy(prepared: torch.nn.Module, student: torch.nn.Module) -> torch.nn.Module:
    """A copy of `student` holding the weights trained in the QAT-prepared graph (torch.export keeps the module
    names, so the state dicts share their keys). Parameters forward never reads (a BERT pooler the classifier does
    not use) are not in the graph and keep their values."""
    import copy

    trained = prepared.state_dict()
    copied = copy.deepcopy(student).eval()
    shared = {k: trained[k].detach().clone() for k in copied.state_dict() if k in trained}
    if not shared:
        from edgekd.errors import InternalError

        raise InternalError("the QAT graph shares no parameter name with the student")
    copied.load_state_dict(shared, strict=False)
    return copied


def is_dynamic(converted: torch.nn.Module) -> bool:
    """Whether a converted PT2E graph quantizes activations per call (choose_qparams in the graph)."""
    return isinstance(converted, torch.fx.GraphModule) and any(
        n.op == "call_function" and "choose_qparams" in str(n.target) for n in converted.graph.nodes)


def has_quantized_embedding(graph: torch.fx.GraphModule) -> bool:
    """An aten.embedding reading a dequantized table: ExecuTorch's quant fusion must rewrite it (embedding_byte)."""
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.embedding.default:
            table = node.args[0]
            if isinstance(table, torch.fx.Node) and "dequantize" in str(table.target):
                return True
    return False
