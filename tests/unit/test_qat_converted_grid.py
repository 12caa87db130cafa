"""QAT trains the weights convert exports: the fake-quantized weight of every conv in the QAT graph equals the
dequantized int8 weight of the converted graph, and the two models' outputs agree (edgekd/quant/pt2e.py
weights_trained_on_the_converted_grid). With torch's fused fake-quant kernel the per-channel grids differed, and the
QAT model's accuracy did not carry over to the artifacts."""

from __future__ import annotations

import copy

import torch

from edgekd.quant import pt2e
from edgekd.stages.qat import prepare_dynamic_batch, qat_mode


def _weight_of(graph: torch.fx.GraphModule, node: torch.fx.Node) -> torch.Tensor:
    """Evaluate the weight argument's subgraph (get_attr -> fake-quant, or int8 constant -> dequantize)."""
    def value(arg):
        if not isinstance(arg, torch.fx.Node):
            return arg
        if arg.op == "get_attr":
            return graph.get_parameter(arg.target) if arg.target in dict(graph.named_parameters()) else (
                getattr(graph, arg.target) if "." not in arg.target else graph.get_buffer(arg.target))
        if arg.op == "call_module":
            return graph.get_submodule(arg.target)(*[value(a) for a in arg.args])
        return arg.target(*[value(a) for a in arg.args], **{k: value(v) for k, v in arg.kwargs.items()})

    with torch.no_grad():
        return value(node.args[1])


def _convs(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in graph.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]


def _separable_cnn() -> torch.nn.Module:
    """Conv, depthwise, pointwise with ReLU6 and no BatchNorm: what the fuse stage hands QAT (BN already folded)."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU6(),
                         nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(), nn.Conv2d(16, 32, 1),
                         nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32), nn.ReLU6(), nn.Conv2d(32, 32, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_qat_weights_are_the_converted_weights():
    torch.manual_seed(0)
    model = _separable_cnn().eval()
    example = (torch.randn(1, 1, 28, 28),)
    quantizer = pt2e.make_quantizer("executorch-xnnpack", qat=True, per_channel=True)
    prepared = prepare_dynamic_batch(copy.deepcopy(model), example, quantizer)
    set_mode = qat_mode(None, None)
    set_mode(prepared, True, 0)
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.05)
    for _ in range(4):  # move the weights, so the observers' ranges and the grids change between steps
        out = prepared(torch.randn(16, 1, 28, 28))
        out.square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    set_mode(prepared, False, 1)
    inputs = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        trained = prepared(inputs)
    converted = pt2e.convert(copy.deepcopy(prepared))
    with torch.no_grad():
        exported = torch.cat([converted(inputs[i:i + 1]) for i in range(len(inputs))])
    before, after = _convs(prepared), _convs(converted)
    assert len(before) == len(after) == 5
    for index, (trained_conv, exported_conv) in enumerate(zip(before, after)):
        assert torch.equal(_weight_of(prepared, trained_conv), _weight_of(converted, exported_conv)), index
    cosine = torch.nn.functional.cosine_similarity(trained.flatten(1), exported.flatten(1)).min()
    assert cosine > 0.9999, float(cosine)
