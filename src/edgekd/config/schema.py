"""Pydantic schemas for recipes and device profiles.

Every model forbids unknown keys (house rule 2): a typo in a recipe must be an error, not a silently ignored
setting. Defaults are chosen so a minimal recipe is a few lines, and everything a run did is in its manifest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Backend = Literal["executorch-xnnpack", "tensorrt", "onnxruntime"]
Task = Literal["image-classification", "sentence-embedding", "text-classification", "causal-lm"]
Precision = Literal["fp32", "fp16", "int8", "int4"]
ArtifactFormat = Literal["pte", "onnx", "engine"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------------------- recipe
class ModelSource(Strict):
    """Where a network comes from: `builtin:NAME`, `hf:PATH` (a local Hugging Face folder) or `py:module:function`."""

    source: str
    task: Task | None = None
    num_labels: int | None = Field(default=None, ge=1)
    kwargs: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_scheme(self):
        if not self.source.startswith(("builtin:", "hf:", "py:")):
            raise ValueError(f"source {self.source!r} must start with builtin:, hf: or py:")
        return self


class DataConfig(Strict):
    """The real data a run calibrates, trains and verifies on; splits never overlap."""

    source: str
    calibration_samples: int = Field(default=64, ge=1)
    eval_samples: int = Field(default=64, ge=1)
    train_samples: int = Field(default=0, ge=0)
    batch_size: int = Field(default=8, ge=1)
    seq_len: int = Field(default=128, ge=8)
    image_size: int = Field(default=224, ge=32)
    seed: int = 0


class FuseStage(Strict):
    enabled: bool = True
    conv_bn: bool = True
    linear_bn: bool = True
    activations: bool = True
    atol: float = Field(default=1e-4, gt=0)


class PtqStage(Strict):
    """Post-training quantization calibrated on the recipe's real data."""

    scheme: Literal["int8"] = "int8"
    per_channel: bool = True
    onnx_mode: Literal["auto", "pt2e", "ort_static", "ort_dynamic"] = "auto"


class ExportStage(Strict):
    formats: list[ArtifactFormat] | None = None  # None: what the profile's backend needs
    opset: int = Field(default=18, ge=13, le=23)
    fp32_reference_artifacts: bool = True  # also write the fp32 artifact: size ratio and parity baseline


class VerifyStage(Strict):
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)


class BenchStage(Strict):
    enabled: bool = True
    warmup: int = Field(default=5, ge=0)
    runs: int = Field(default=30, ge=3)
    batch_sizes: list[int] | None = None  # None: the profile's


class Stages(Strict):
    """Which optional stages run. load, export and verify always run; a present section enables its stage."""

    distill: dict | None = None
    fuse: FuseStage = Field(default_factory=FuseStage)
    sensitivity: dict | None = None
    mixed_precision: dict | None = None
    ptq: PtqStage | None = None
    qat: dict | None = None
    export: ExportStage = Field(default_factory=ExportStage)
    verify: VerifyStage = Field(default_factory=VerifyStage)
    bench: BenchStage = Field(default_factory=BenchStage)

    @model_validator(mode="after")
    def _one_quantizer(self):
        if self.ptq is not None and self.qat is not None:
            raise ValueError("ptq and qat are alternatives: keep one of them")
        return self


class Budgets(Strict):
    """Per-device limits a run must meet; a missing key is not checked (and the report says so)."""

    latency_p50_ms: float | None = Field(default=None, gt=0)
    latency_p90_ms: float | None = Field(default=None, gt=0)
    peak_memory_mb: float | None = Field(default=None, gt=0)
    artifact_size_mb: float | None = Field(default=None, gt=0)
    accuracy_drop: float | None = Field(default=None, ge=0)
    # causal LMs (tokens per second are minimums, not maximums)
    prefill_tokens_per_s: float | None = Field(default=None, gt=0)
    decode_tokens_per_s: float | None = Field(default=None, gt=0)
    perplexity_increase: float | None = Field(default=None, ge=0)


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: ModelSource
    teacher: ModelSource | None = None
    data: DataConfig
    stages: Stages = Field(default_factory=Stages)
    budgets: Budgets | None = None  # overrides the profile's, key by key
    seed: int = 0


# ----------------------------------------------------------------------------------------------------- profile
class RunnerConfig(Strict):
    kind: Literal["local", "ssh", "adb"] = "local"
    host: str | None = None
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    key: str | None = None
    serial: str | None = None
    remote_dir: str = "/tmp/edgekd"
    remote_python: str = "python3"
    binary: str | None = None  # adb: path of the benchmark binary on the device; ssh: trtexec or executor_runner
    connect_timeout_s: int = Field(default=10, ge=1)


class ShapeRange(Strict):
    min: list[int]
    opt: list[int]
    max: list[int]


class TensorRTConfig(Strict):
    opset: int = Field(default=18, ge=13, le=23)
    workspace_mb: int = Field(default=1024, ge=16)
    fp16: bool = True
    shapes: dict[str, ShapeRange] = Field(default_factory=dict)


class Profile(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    backend: Backend
    precision: Precision = "int8"
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    threads: int = Field(default=1, ge=1)
    cores: list[int] | None = None  # CPU ids to pin the benchmark to (big cores)
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    budgets: Budgets = Field(default_factory=Budgets)
    tensorrt: TensorRTConfig | None = None
