"""QAT on a text encoder: the additive attention mask (finfo(float32).min where a token is padding) must not get a
fake-quant. Trained through a per-tensor int8 scale of ~1e36 every attention score is 0 (uniform attention). The
offending nodes are found on a calibrated copy, so the training graph's observers never see the probe (a CNN's QAT
is unchanged)."""

from __future__ import annotations

import torch

from edgekd.models.builtin import SentenceEmbedder, SequenceClassifier
from edgekd.quant import pt2e
from edgekd.stages.qat import prepare_dynamic_batch


def tiny_classifier() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    encoder = BertModel(cfg, add_pooling_layer=False)
    with torch.no_grad():  # peaked attention, as in a trained encoder (random init attends almost uniformly)
        for layer in encoder.encoder.layer:
            layer.attention.self.query.weight.mul_(12.0)
            layer.attention.self.key.weight.mul_(12.0)
    return SequenceClassifier(SentenceEmbedder(encoder, normalize=False), 2).eval()


def padded_samples(count: int = 6, seq: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    samples = []
    for i in range(count):
        ids = torch.randint(1, 120, (1, seq), generator=generator)
        mask = torch.ones(1, seq, dtype=torch.long)
        mask[0, 6 + i:] = 0  # real sentences are padded to the exported length
        samples.append((ids * mask, mask))
    return samples


def _prepared(module):
    quantizer = pt2e.make_quantizer("executorch-xnnpack", qat=True)
    example = (torch.ones(1, 16, dtype=torch.long), torch.ones(1, 16, dtype=torch.long))
    return prepare_dynamic_batch(module, example, quantizer)


def _fake_quant_nodes(graph_module) -> set[str]:
    return {n.name for n in graph_module.graph.nodes if n.op == "call_module"
            and hasattr(graph_module.get_submodule(n.target), "fake_quant_enabled")}


def _scales(graph_module) -> dict[str, float]:
    """Per-tensor scale of every activation fake-quant, as convert_pt2e would bake it in."""
    found = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            if hasattr(module, "fake_quant_enabled") and getattr(module, "ch_axis", -1) < 0:
                found[node.name] = float(module.calculate_qparams()[0].max())
    return found


def test_mask_fake_quants_are_dropped_before_training_without_touching_the_observers():
    module = tiny_classifier()
    samples = padded_samples()
    kept, dropped_graph = _prepared(module), _prepared(module)
    before = _fake_quant_nodes(dropped_graph)
    untouched = {k: v.clone() for k, v in dropped_graph.state_dict().items()}
    dropped = pt2e.drop_unrepresentable_before_training(dropped_graph, samples)
    # the mask itself (where) and `scores + mask` in each of the 2 layers
    assert len(dropped) == 3 and set(dropped) <= before and not set(dropped) & _fake_quant_nodes(dropped_graph)
    for key, value in dropped_graph.state_dict().items():  # the probe ran on a copy: no observer moved
        assert torch.equal(value, untouched[key]) or torch.isnan(value).all(), key

    with torch.no_grad():  # what the first training steps do: observers see padded sentences
        for graph in (kept, dropped_graph):
            for sample in samples:
                graph(*sample)
    kept_scales, dropped_scales = _scales(kept), _scales(dropped_graph)
    # without the drop those 3 get a scale of ~1e36: every attention score rounds to the zero point
    assert sorted(n for n, v in kept_scales.items() if v > 1e30) == sorted(dropped)
    assert max(dropped_scales.values()) < 1.0 and set(dropped_scales) == set(kept_scales) - set(dropped)
    with torch.no_grad():
        reference = torch.cat([module(*s) for s in samples])
        assert torch.isfinite(torch.cat([dropped_graph(*s) for s in samples])).all()
    assert torch.isfinite(reference).all()


def test_a_cnn_keeps_every_fake_quant_and_its_observer_state():
    from edgekd.models.builtin import SmallCNN

    torch.manual_seed(0)
    cnn = SmallCNN(8).eval()
    quantizer = pt2e.make_quantizer("executorch-xnnpack", qat=True)
    prepared = prepare_dynamic_batch(cnn, (torch.zeros(1, 1, 8, 8),), quantizer)
    state = {k: v.clone() for k, v in prepared.state_dict().items()}
    samples = [(torch.rand(1, 1, 8, 8),) for _ in range(4)]
    assert pt2e.drop_unrepresentable_before_training(prepared, samples) == []
    for key, value in prepared.state_dict().items():
        assert torch.equal(value, state[key]) or torch.isnan(value).all(), key
