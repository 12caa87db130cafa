"""Pydantic schemas for recipes and device profiles.

Every model forbids unknown keys (docs/architecture.md, rule 2): a typo in a recipe must be an error, not a silently
ignored
setting. Defaults are chosen so a minimal recipe is a few lines, and everything a run did is in its manifest.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from edgekd.backends import names as backend_names  # data-only records, no runtimes imported

from .llm import LlmConfig  # the causal-LM section, in its own module
from .strict import Strict

Backend = Literal[backend_names()]  # type: ignore[valid-type]  # one per module in edgekd/backends/
Task = Literal["image-classification", "sentence-embedding", "text-classification", "causal-lm"]
Precision = Literal["fp32", "fp16", "int8", "int4"]
ArtifactFormat = Literal["pte", "onnx", "engine"]
# The target CPU's int8 dot-product instructions; edgekd.quant.ort.ISA_FORMATS maps each to onnxruntime's format.
Isa = Literal["avx512-vnni", "avx-vnni", "avx2", "arm64"]


def _file_name(value: str) -> str:
    """`name` becomes out/<name>/, out/<name>.work/ and .<name>.staging-PID: refuse what the OS or the output
    folder would not take before minutes of work (hidden or dot-only names, names over the file-name limit)."""
    if value.startswith("."):
        raise ValueError("must not start with '.' (hidden, and '.'/'..' leave the output folder)")
    if len(value) > 100:
        raise ValueError(f"is {len(value)} characters; at most 100 (it becomes a file name with suffixes)")
    return value


FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$"), AfterValidator(_file_name)]


# ----------------------------------------------------------------------------------------------------- recipe
class ModelSource(Strict):
    """Where a network comes from: `builtin:NAME`, `hf:PATH` (a local Hugging Face folder), `py:module:function`,
    `py:FILE.py:function` (a Python file, imported by path) or `pt2:FILE.pt2` (a saved torch.export program).

    Relative paths are relative to the recipe's folder, which is also on the import path for `py:module:function`.
    A factory returns a ModelBundle, `(nn.Module, example_inputs)`, or an nn.Module whose input shape is
    `input_shape`: the shape is needed to export, and the factory or the recipe is where the user knows it."""

    source: str
    task: Task | None = None
    num_labels: int | None = Field(default=None, ge=1)
    kwargs: dict = Field(default_factory=dict)
    input_shape: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=8)
    # Python files in an hf: folder (config.json auto_map) run only when this is true: off, a folder's code never
    # runs and nothing asks on stdin.
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _known_scheme(self):
        if not self.source.startswith(("builtin:", "hf:", "py:", "pt2:")):
            raise ValueError(f"source {self.source!r} must start with builtin:, hf:, py: or pt2:")
        return self


class DataConfig(Strict):
    """The real data a run calibrates, trains and verifies on; splits never overlap.

    `source` is `builtin:NAME`, `py:module:function`, or a file of the user's (edgekd.data.files): `images:FOLDER`
    (short side resized to `resize`, centre-cropped to the model input's height x width, scaled to 0..1, then
    `(x - mean) / std` per channel), `arrays:FILE.npy|.npz` (model inputs as stored, optional `labels`) or
    `lines:FILE.txt` (one sentence per line, tokenized by the model's tokenizer). Relative paths: the recipe's folder.
    """

    source: str
    calibration_samples: int = Field(default=64, ge=1)
    eval_samples: int = Field(default=64, ge=1)
    train_samples: int = Field(default=0, ge=0)
    batch_size: int = Field(default=8, ge=1)
    seq_len: int = Field(default=128, ge=8)
    image_size: int = Field(default=224, ge=32)
    resize: int | None = Field(default=None, ge=8)  # images: short side before the centre crop; None: the crop's
    mean: list[float] | None = Field(default=None, min_length=1, max_length=4)  # images: per channel, 0..1 scale
    std: list[Annotated[float, Field(gt=0)]] | None = Field(default=None, min_length=1, max_length=4)
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
    # Layers kept in fp32 without a solver: exact module names or `re:` patterns (what `edgekd sensitivity` ranks
    # worst). Merged into the precision plan, so every exporter leaves them out of int8 alike.
    keep_float: list[str] = Field(default_factory=list)
    # Activation ranges: fixed from calibration (static) or measured per call (dynamic, XNNPACK's dynamically
    # quantized Linear). auto: dynamic for text encoders on ExecuTorch, static everywhere else.
    activations: Literal["auto", "static", "dynamic"] = "auto"


class ExportStage(Strict):
    formats: list[ArtifactFormat] | None = None  # None: what the profile's backend needs
    opset: int = Field(default=18, ge=13, le=23)
    fp32_reference_artifacts: bool = True  # also write the fp32 artifact: size ratio and parity baseline


class VerifyStage(Strict):
    min_top1_agreement: float | None = Field(default=None, ge=0, le=1)
    min_cosine: float | None = Field(default=None, ge=-1, le=1)


class SensitivityStage(Strict):
    """Per-layer sensitivity: the error each Conv/Linear alone adds when quantized (edgekd.quant.sensitivity)."""

    enabled: bool = True
    samples: int = Field(default=16, ge=1)  # calibration samples fed per layer
    precisions: list[Literal["int8", "int4", "fp16"]] | None = None  # None: int8 + what the backend supports
    batch_size: int = Field(default=16, ge=1)


class MixedPrecisionStage(Strict):
    """Precision per layer under the artifact-size budget (exact knapsack), or a saved plan loaded from `plan`."""

    enabled: bool = True
    plan: str | None = None  # a precision_plan.json from an earlier run: loaded and validated instead of solving
    precisions: list[Precision] | None = None  # candidates; None: what the profile's backend supports
    granularity_kb: int = Field(default=4, ge=1, le=1024)  # DP bucket size over bytes
    overhead_mb: float | None = Field(default=None, ge=0)  # non-layer bytes; None: estimated from the model


class TemperatureSchedule(Strict):
    """KD temperature: constant at `start`, or linear from `start` to `end` over all training steps."""

    start: float = Field(default=4.0, gt=0)
    end: float | None = Field(default=None, gt=0)  # None: same as start
    schedule: Literal["constant", "linear"] = "constant"


class HiddenPair(Strict):
    student: str  # exact module name in the student (model.named_modules())
    teacher: str  # exact module name in the teacher


class HiddenMatching(Strict):
    """MSE between chosen intermediate outputs; a learned Linear projects student width to teacher width."""

    pairs: list[HiddenPair] = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)


class TrainStage(Strict):
    """What the KD trainer (edgekd.train) needs; shared by the distill and qat stages."""

    enabled: bool = True
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)  # max global grad norm; None: no clipping
    seed: int = 0
    # Intra-op CPU threads while training; None: the process's (torch default or OMP_NUM_THREADS). Float rounding
    # depends on how reductions are split, so a rerun matches bit for bit only with the same count on the same host.
    threads: int | None = Field(default=None, ge=1)
    alpha: float = Field(default=0.7, ge=0, le=1)  # weight of the KD term; 1 - alpha weights the label CE
    temperature: TemperatureSchedule = Field(default_factory=TemperatureSchedule)
    embedding_loss: Literal["cosine", "mse"] = "cosine"  # tasks without classes (sentence embeddings)
    checkpoint_every: int = Field(default=200, ge=1)  # steps; a checkpoint is also written at every epoch end
    device: Literal["cpu", "cuda", "auto"] | None = None  # None: the CLI's --device


class DistillStage(TrainStage):
    """fp32 knowledge distillation from recipe.teacher into the student (edgekd.stages.distill)."""

    hidden: HiddenMatching | None = None


class QatStage(TrainStage):
    """PT2E quantization-aware training with the same KD loss, then convert (edgekd.stages.qat)."""

    lr: float = Field(default=1e-4, gt=0)
    epochs: int = Field(default=3, ge=1)
    per_channel: bool = True
    freeze_observers_epoch: int | None = Field(default=None, ge=0)  # None: the last epoch freezes them
    freeze_bn_epoch: int | None = Field(default=None, ge=0)  # None: the last epoch uses running BN statistics
    ptq_baseline: bool = True  # also export plain PTQ of the same student (reference artifacts, never gated)
    # Activation ranges as in stages.ptq.activations: learned static ranges, or per call (dynamic: the Linear inputs
    # are fake-quantized per sample in training; edgekd/quant/dynamic_text.py). auto: the backend's choice for text
    # encoders, static everywhere else.
    activations: Literal["auto", "static", "dynamic"] = "auto"


class PruneTarget(Strict):
    """What structured pruning must remove: a fraction of the student's MACs or of its parameters (one of them)."""

    macs: float | None = Field(default=None, gt=0, lt=1)
    params: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.macs is None) == (self.params is None):
            raise ValueError("set exactly one of macs or params (a fraction in (0, 1) to remove)")
        return self


class RecoveryStage(TrainStage):
    """KD fine-tune of the pruned student from the unpruned one (edgekd.stages.prune)."""

    epochs: int = Field(default=3, ge=1)
    lr: float = Field(default=5e-4, gt=0)
    # BatchNorm keeps its running statistics while the weights train: with a few hundred samples (photo crops) the
    # batch statistics of 16 crops would overwrite those the network learned on its real training set.
    freeze_bn: bool = False


class PruneStage(Strict):
    """Structured channel pruning (torch-pruning) between distill and fuse, then KD recovery (edgekd.stages.prune).

    Layer names in `ignore` and `layer_max_ratio` are exact module names or `re:` patterns (rule 7 of
    docs/architecture.md); the layers that produce the model's output are never pruned."""

    enabled: bool = True
    target: PruneTarget
    importance: Literal["l1", "l2", "taylor"] = "l2"
    global_pruning: bool = False  # rank channels across layers (else every layer loses the same fraction)
    ignore: list[str] = Field(default_factory=list)
    max_ratio: float = Field(default=0.8, gt=0, lt=1)  # most of any one layer's channels that may go
    layer_max_ratio: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=dict)
    round_to: int | None = Field(default=None, ge=1, le=256)  # keep channel counts multiples of this
    taylor_batches: int = Field(default=4, ge=1)  # train batches whose gradients rank channels (taylor)
    drop_margin: float = Field(default=0.01, ge=0, le=1)  # reported: is pruned+KD more than this below unpruned?
    recovery: RecoveryStage | None = None  # None: no fine-tune (the pruned weights are exported as they are)


class BenchStage(Strict):
    enabled: bool = True
    warmup: int = Field(default=5, ge=0)
    runs: int = Field(default=30, ge=3)
    batch_sizes: list[int] | None = None  # None: the profile's


class Stages(Strict):
    """Which optional stages run. load, export and verify always run; a present section enables its stage."""

    distill: DistillStage | None = None
    prune: PruneStage | None = None
    fuse: FuseStage = Field(default_factory=FuseStage)
    sensitivity: SensitivityStage | None = None
    mixed_precision: MixedPrecisionStage | None = None
    ptq: PtqStage | None = None
    qat: QatStage | None = None
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
    # fp32 p50 / quantized p50 of the same runtime, both measured on the device: quantizing must pay off in speed.
    min_speedup_vs_fp32: float | None = Field(default=None, gt=0)


class Recipe(Strict):
    name: FileName
    description: str = ""
    model: ModelSource
    teacher: ModelSource | None = None
    data: DataConfig
    stages: Stages = Field(default_factory=Stages)
    budgets: Budgets | None = None  # overrides the profile's, key by key
    llm: LlmConfig | None = None  # causal LMs only (model task causal-lm)
    seed: int = 0

    @model_validator(mode="after")
    def _speedup_needs_fp32(self):
        if (self.budgets is not None and self.budgets.min_speedup_vs_fp32 is not None
                and not self.stages.export.fp32_reference_artifacts):
            raise ValueError("budgets.min_speedup_vs_fp32 compares with the fp32 artifact: keep "
                             "stages.export.fp32_reference_artifacts true")
        return self


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
    # The local runner's host IS the profile's device (an x86 server profile benchmarked on that server). Only then
    # are local latency and memory judged against the budgets; otherwise they are host timings, reported, not judged.
    device_is_host: bool = False


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
    name: FileName
    description: str = ""
    backend: Backend
    precision: Precision = "int8"
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    threads: int = Field(default=1, ge=1)
    cores: list[int] | None = None  # CPU ids to pin the benchmark to (big cores)
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    # The target CPU's int8 instructions: avx512-vnni / avx-vnni (x86 with VNNI: u8 x s8 dot products into int32),
    # avx2 (x86 without VNNI: u8 x s8 pairs are summed in saturating int16), arm64 (sdot/udot). It picks the quantized
    # ONNX format (edgekd.quant.ort.ISA_FORMATS). avx2 is the default: its format is exact on every x86-64 CPU.
    isa: Isa = "avx2"
    budgets: Budgets = Field(default_factory=Budgets)
    tensorrt: TensorRTConfig | None = None
