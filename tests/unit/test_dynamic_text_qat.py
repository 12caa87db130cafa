"""Dynamic int8 for text encoders (edgekd/quant/dynamic_text.py) on a tiny config-built BERT classifier: QAT with
per-sample fake-quantized Linear inputs trains and converts; the converted model (int8 Linear weights, activations
per call, a per-row int8 word embedding) runs in the real ExecuTorch runtime as quantized_decomposed.embedding_byte
and matches PyTorch; the ONNX of the same trained weights (onnxruntime's dynamic quantizer) runs in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.context import ModelBundle
from edgekd.quant import pt2e
from edgekd.quant.dynamic_text import DynamicFakeQuant, has_quantized_embedding, is_dynamic, trained_float_copy
from edgekd.stages.qat import prepare_dynamic_batch

from .test_qat_attention_mask import padded_samples, tiny_classifier

EXAMPLE = (torch.ones(1, 16, dtype=torch.long), torch.ones(1, 16, dtype=torch.long))


def _bundle(module) -> ModelBundle:
    return ModelBundle(name="tiny", task="text-classification", module=module, example_inputs=EXAMPLE,
                       input_names=["input_ids", "attention_mask"], output_names=["logits"],
                       dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                     "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})


def _qat_steps(student, samples, steps: int = 3):
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    quantizer = pt2e.make_quantizer("executorch-xnnpack", qat=True, dynamic=True)
    prepared = prepare_dynamic_batch(student, EXAMPLE, quantizer)
    fake = [m for m in prepared.modules() if isinstance(m, DynamicFakeQuant)]
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-2)
    ids, mask = torch.cat([s[0] for s in samples]), torch.cat([s[1] for s in samples])
    move_exported_model_to_train(prepared)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(prepared(ids, mask), torch.arange(len(ids)) % 2).backward()
        opt.step()
    move_exported_model_to_eval(prepared)
    return prepared, fake


def _dynamic_ptq(module, samples):
    quantizer = pt2e.make_quantizer("executorch-xnnpack", dynamic=True, embeddings=True)
    prepared = pt2e.prepare(module, EXAMPLE, quantizer)
    pt2e.calibrate(prepared, samples)
    return pt2e.convert(prepared), quantizer


def test_dynamic_fake_quant_uses_each_samples_own_range():
    fq = DynamicFakeQuant()
    x = torch.stack([torch.linspace(-1, 1, 64), torch.linspace(-100, 100, 64)])
    y = fq(x)
    # one step of sample 0's grid is 2/255, of sample 1's 200/255: each sample rounds on its own range
    assert (y[0] - x[0]).abs().max() <= 1 / 255 + 1e-6
    assert (y[1] - x[1]).abs().max() <= 100 / 255 + 1e-4
    assert (y[0] - x[0]).abs().max() > 0  # it does quantize


@pytest.mark.slow  # about 60 s on 2 shared cores: QAT steps, a .pte and an ONNX export
def test_dynamic_qat_trains_then_runs_in_executorch_and_onnxruntime(tmp_path: Path):
    from edgekd.export.executorch import export_pte
    from edgekd.export.onnx import export_dynamic_int8
    from edgekd.runtime import load_onnx, load_pte

    student, samples = tiny_classifier(), padded_samples()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    prepared, fake = _qat_steps(student, samples)
    assert fake, "the Linear inputs get DynamicFakeQuant"
    trained = trained_float_copy(prepared, student)
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert any("query.weight" in k for k in changed)  # the trained weights, not the original ones

    converted, quantizer = _dynamic_ptq(trained, samples)
    assert is_dynamic(converted) and has_quantized_embedding(converted)
    assert len(quantizer.embeddings_quantized) == 3  # word, position and token-type tables

    pte = tmp_path / "tiny.pte"
    details = export_pte(converted, EXAMPLE, pte)
    assert details["delegated_subgraphs"] >= 1 and details["delegated_by_op"].get("aten_linear_default", 0) > 0
    run_pte = load_pte(pte)
    with torch.no_grad():
        for sample in samples:
            want = converted(*sample).numpy()
            got = np.asarray(run_pte(list(sample))[0])
            # the same int8 weights; XNNPACK quantizes each row (token) of a Linear input, PyTorch the whole tensor
            assert np.abs(got - want).max() <= 0.05, (got, want)

    onnx_path = tmp_path / "tiny.int8.onnx"
    info = export_dynamic_int8(trained, _bundle(trained), onnx_path, opset=18, isa="avx512-vnni")
    assert info["ops"].get("MatMulInteger", 0) + info["ops"].get("DynamicQuantizeMatMul", 0) > 0
    run_onnx = load_onnx(onnx_path)
    with torch.no_grad():
        for sample in samples:
            want = trained(*sample).numpy()
            got = np.asarray(run_onnx([s.numpy() for s in sample])[0])
            assert np.abs(got - want).max() <= 0.1, (got, want)


@pytest.mark.slow  # about 40 s: two .pte exports
def test_int8_word_embedding_shrinks_the_pte(tmp_path: Path):
    """A vocabulary large enough that the table dominates, as MiniLM's 30522 x 384 does: the int8 table (1 byte per
    value plus a scale and zero point per row) is about a quarter of the fp32 one."""
    from transformers import BertConfig, BertModel

    from edgekd.export.executorch import export_pte
    from edgekd.models.builtin import SentenceEmbedder, SequenceClassifier

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=8000, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    model = SequenceClassifier(SentenceEmbedder(BertModel(cfg, add_pooling_layer=False), normalize=False), 2).eval()
    samples = padded_samples()
    plain = pt2e.make_quantizer("executorch-xnnpack", dynamic=True)
    prepared = pt2e.prepare(model, EXAMPLE, plain)
    pt2e.calibrate(prepared, samples)
    export_pte(pt2e.convert(prepared), EXAMPLE, tmp_path / "fp32_table.pte")
    converted, _ = _dynamic_ptq(model, samples)
    export_pte(converted, EXAMPLE, tmp_path / "int8_table.pte")
    table = 8000 * 64 * 4
    fp32_size, int8_size = (tmp_path / "fp32_table.pte").stat().st_size, (tmp_path / "int8_table.pte").stat().st_size
    assert fp32_size - int8_size >= 0.7 * table, (fp32_size, int8_size)  # 3 of every 4 table bytes gone
    with torch.no_grad():
        ref = model(*samples[0])
    out = load_and_run(tmp_path / "int8_table.pte", samples[0])
    assert np.abs(out - ref.numpy()).max() <= 0.05


def load_and_run(path: Path, sample) -> np.ndarray:
    from edgekd.runtime import load_pte

    return np.asarray(load_pte(path)(list(sample))[0])


@pytest.mark.parametrize("qat", [False, True])
def test_embeddings_are_not_quantized_unless_asked(qat):
    quantizer = pt2e.make_quantizer("executorch-xnnpack", qat=qat, dynamic=True)
    student = tiny_classifier()
    prepared = prepare_dynamic_batch(student, EXAMPLE, quantizer) if qat else pt2e.prepare(student, EXAMPLE,
                                                                                             quantizer)
    assert quantizer.embeddings_quantized == []
    tables = [n.args[0] for n in prepared.graph.nodes if n.target == torch.ops.aten.embedding.default]
    assert len(tables) == 3 and all(t.op == "get_attr" for t in tables)  # no observer between table and lookup
