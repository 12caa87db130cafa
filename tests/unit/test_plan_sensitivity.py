"""Per-layer sensitivity: fake-quant is faithful, one layer at a time, weights restored, ranking is meaningful."""

import math

import pytest
import torch

from edgekd.quant import sensitivity as sens


def test_int8_weight_fake_quant_error_within_half_a_step_per_channel():
    w = torch.randn(6, 4, 3, 3) * torch.tensor([1, 10, 0.1, 1, 1, 5]).reshape(-1, 1, 1, 1)
    q = sens.fq_weight_int8(w)
    step = w.reshape(6, -1).abs().amax(1) / 127
    assert ((q - w).reshape(6, -1).abs().amax(1) <= step / 2 + 1e-7).all()
    assert len(torch.unique(q[1])) <= 255


def test_int4_groups_of_32_along_input():
    w = torch.randn(3, 70)
    q = sens.fq_weight_int4(w)
    assert q.shape == w.shape
    for g in range(3):  # each group of 32 columns has at most 16 levels
        assert len(torch.unique(q[0, 32 * g:32 * (g + 1)])) <= 16


def test_weight_bytes_cost_model():
    lin = torch.nn.Linear(64, 10)
    assert sens.weight_bytes(lin, "fp32") == 4 * (640 + 10)
    assert sens.weight_bytes(lin, "fp16") == 2 * (640 + 10)
    assert sens.weight_bytes(lin, "int8") == 640 + 4 * 10 + 4 * 10
    assert sens.weight_bytes(lin, "int4") == 320 + 4 * 10 * 2 + 4 * 10


def test_outlier_input_makes_a_layer_the_most_sensitive_and_weights_are_restored():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10)).eval()
    samples = [(torch.randn(1, 16),) for _ in range(15)]
    samples.append((torch.randn(1, 16) * 400,))  # one huge sample stretches layer 0's input range: coarse int8 steps
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sens.analyze(model, samples, task="image-classification", precisions=("int8", "int4", "fp16"),
                          batch_size=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model[0]._forward_pre_hooks and not model[0]._forward_hooks
    ranked = result.ranked("int8")
    assert ranked[0].name == "0"
    assert [layer.sqnr_db["int8"] for layer in ranked] == sorted(layer.sqnr_db["int8"] for layer in ranked)
    for layer in result.layers:
        assert layer.sqnr_db["fp16"] > layer.sqnr_db["int8"]  # half precision is far finer than int8
        assert 0 <= layer.kl["int8"] and 0 <= layer.top1_agreement["int8"] <= 1
        assert layer.nsr["int8"] == pytest.approx(10 ** (-layer.sqnr_db["int8"] / 10))
    assert result.wall_s > 0 and result.samples == 16


def test_embeddings_use_one_minus_cosine_and_labels_give_metric_delta(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()
    samples = [(torch.randn(1, 1, 8, 8),) for _ in range(8)]
    emb = sens.analyze(model, samples, task="sentence-embedding", precisions=("int8", "int4"))
    conv = next(layer for layer in emb.layers if layer.name == "0")
    assert "int4" not in conv.sqnr_db  # int4 weight-only is a GEMM-only kernel
    assert set(emb.layers[1].one_minus_cos) == {"int8", "int4"} and not emb.layers[1].kl
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cls = sens.analyze(model, samples, task="image-classification", labels=labels)
    assert cls.metric_name == "accuracy" and all("int8" in layer.metric_delta for layer in cls.layers)
    path = sens.bar_chart(cls, tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = sens.SensitivityResult.from_dict(cls.to_dict())
    assert [layer.name for layer in again.layers] == [layer.name for layer in cls.ranked()]
    assert not math.isnan(again.layers[0].sqnr_db["int8"])
