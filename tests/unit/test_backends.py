"""The backend registry (edgekd/backends/): every registered target declares every field with an allowed value, and
the stages, the config schema and the verdicts read their backend facts from it."""

from __future__ import annotations

import dataclasses

import pytest

from edgekd import backends
from edgekd.backends import record
from edgekd.config.schema import Profile
from edgekd.errors import EdgekdError
from edgekd.stages.fuse import ACTIVATION_OPS


@pytest.mark.parametrize("name", backends.names())
def test_every_backend_declares_every_field(name: str) -> None:
    b = backends.get(name)
    for field in dataclasses.fields(record.Backend):
        value = getattr(b, field.name)
        assert value is not None and (value != "" or field.name == "causal_lm_formats"), f"{name}.{field.name}"
    assert b.name == name
    assert b.formats and set(b.formats) <= set(record.FORMAT_RUNTIME)
    assert b.device_runtime in set(record.FORMAT_RUNTIME.values())
    assert b.device_runtime in {record.FORMAT_RUNTIME[f] for f in b.formats}, "the device must run one of its formats"
    assert set(b.causal_lm_formats) <= set(b.formats)
    assert b.quantizer in record.QUANTIZER_SCHEMES
    assert "int8" in b.layer_precisions and set(b.layer_precisions) <= set(record.PRECISIONS)
    assert isinstance(b.int4_weight_only, bool) and isinstance(b.optimization_profile, bool)
    assert b.fused_activations <= ACTIVATION_OPS
    assert b.text_activations in record.ACTIVATION_MODES
    assert {b.onnx_mode_images, b.onnx_mode_text} <= set(record.ONNX_MODES)
    assert b.onnx_verify in record.ONNX_VERIFY
    assert b.qdq_activation_type in record.QDQ_ACTIVATION_TYPES
    assert b.quantizer != "symmetric" or b.qdq_activation_type == "int8", "zero point 0 is an int8 zero point"
    assert isinstance(b.onnx_graph_passes, tuple) and set(b.onnx_graph_passes) <= set(record.ONNX_GRAPH_PASSES)
    assert not b.onnx_graph_passes or b.device_runtime == "onnxruntime", "contrib ops run only in onnxruntime"


def test_profile_schema_accepts_exactly_the_registered_backends() -> None:
    for name in backends.names():
        assert Profile(name="p", backend=name).backend == name
    with pytest.raises(Exception) as info:
        Profile(name="p", backend="coreml")
    for name in backends.names():
        assert name in str(info.value)


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(EdgekdError) as info:
        backends.get("coreml")
    assert info.value.key == "backend"
    assert all(name in info.value.render() for name in backends.names())


def test_device_runtime_of_unknown_manifest_backend_is_none() -> None:
    assert backends.device_runtime_of("executorch-xnnpack") == "executorch"
    assert backends.device_runtime_of(None) is None
    assert backends.device_runtime_of("from-a-newer-edgekd") is None
