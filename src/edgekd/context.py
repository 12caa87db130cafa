"""The typed Context that stages pass along: what was loaded, decided, produced and measured.

Stages read and extend it; nothing else is shared between them. Everything in it that a user should see ends up in
manifest.json or report.md, so stages record their decisions here instead of printing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from edgekd.config.schema import Budgets, Profile, Recipe
from edgekd.errors import InternalError

if TYPE_CHECKING:  # annotations only: these modules import the stages' heavy dependencies
    from edgekd.quant.plan import PrecisionPlan
    from edgekd.quant.sensitivity import SensitivityResult


@dataclass
class CausalLM:
    """What a causal LM's export, QAT-KD and verify need beyond the generic last-position view (edgekd/llm/).

    The KV-cache exports and greedy decoding work on the Hugging Face model itself, not on `ModelBundle.module`;
    QAT-KD swaps in trained weights and keeps the model as loaded for verify, and the int4 exports keep a quantized
    source's grid only while the weights still lie on it. Typed fields, so a stage cannot misspell a key.
    """

    hf_model: torch.nn.Module  # what export quantizes: the loaded model, LoRA merged, QAT-KD-trained if that ran
    gguf: str | None = None  # the quantized source file whose grid int4 artifacts keep (edgekd/llm/gguf_source.py)
    lora_adapter: str | None = None  # set once the recipe's adapter is merged into hf_model (at load)
    reference: torch.nn.Module | None = None  # the model as loaded, kept when QAT-KD replaced hf_model

    @property
    def weights_changed(self) -> bool:
        """True once LoRA merging or QAT-KD moved the weights off what was loaded from the source file."""
        return bool(self.lora_adapter) or self.reference is not None


@dataclass
class ModelBundle:
    """A network and what generic code needs to feed it and read its outputs, whatever the architecture.

    `module` takes `example_inputs` positionally and returns one tensor (logits, an embedding, next-token logits);
    model-specific wrapping (pooling, dict outputs) happens when the bundle is built, never in generic code.
    """

    name: str
    task: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str] = field(default_factory=lambda: ["output"])
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # tokenizer, preprocessing, label names, source path
    causal_lm: CausalLM | None = None  # set for task "causal-lm" (edgekd/llm/models.py make_bundle)

    def lm(self) -> CausalLM:
        """The causal LM's parts; a non-LM bundle reaching causal-LM code is a bug, not bad input."""
        if self.causal_lm is None:
            raise InternalError(f"model {self.name!r} (task {self.task}) has no causal LM parts")
        return self.causal_lm


@dataclass
class Split:
    """One data split: batch-1 input tuples, with labels where the task has them."""

    inputs: list[tuple[torch.Tensor, ...]]
    labels: torch.Tensor | None = None
    texts: list[str] | None = None
    description: str = ""

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, batch_size: int) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
        """Concatenate consecutive samples into batches (inputs must share shapes, which the data loaders ensure)."""
        for start in range(0, len(self.inputs), batch_size):
            chunk = self.inputs[start:start + batch_size]
            stacked = tuple(torch.cat(parts, dim=0) for parts in zip(*chunk))
            labels = None if self.labels is None else self.labels[start:start + batch_size]
            yield stacked, labels


@dataclass
class Data:
    """Disjoint splits of real data: calibration for PTQ and sensitivity, train for KD/QAT, eval for verify."""

    calibration: Split
    eval: Split
    train: Split | None = None
    num_classes: int | None = None
    source: str = ""


@dataclass
class Artifact:
    """One exported file and everything measured about it; serialised into the manifest."""

    name: str
    path: Path
    format: str  # pte, onnx, engine
    runtime: str  # executorch, onnxruntime, tensorrt
    precision: str  # fp32, int8, mixed, 8da4w, ...
    bytes: int = 0
    sha256: str = ""
    is_reference: bool = False  # the fp32 baseline artifact (size ratio, parity baseline), not a deliverable
    details: dict[str, Any] = field(default_factory=dict)  # delegation counts, per-layer precision, lint results
    parity: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Decision:
    """Something a stage chose not to do, or did differently, and why (docs/architecture.md, rule 6: nothing is
    skipped silently)."""

    stage: str
    subject: str
    action: str
    reason: str


@dataclass
class Context:
    recipe: Recipe
    profile: Profile
    recipe_path: Path
    profile_path: Path
    out_dir: Path  # the run's staging folder; renamed onto out/<name>/ when the run completes
    work_dir: Path | None = None  # out/<name>.work/: survives interrupted runs (checkpoints for --resume, caches)
    device: str = "cpu"
    resume: bool = False
    model: ModelBundle | None = None
    teacher: ModelBundle | None = None
    data: Data | None = None
    reference: torch.nn.Module | None = None  # the fp32 student every artifact is compared against
    quantized: torch.nn.Module | None = None  # converted PT2E model (the PyTorch view of the int8 artifacts)
    # The float weights `quantized` was converted from when they differ from model.module (dynamic QAT): the ONNX
    # writer quantizes these with onnxruntime, as a dynamically quantized PT2E graph does not export to ONNX
    quantized_float: torch.nn.Module | None = None
    plan: PrecisionPlan | None = None  # when mixed precision ran or a plan was loaded
    sensitivity: SensitivityResult | None = None  # the sensitivity stage's measurements, which mixed_precision solves
    float_layers: list[str] = field(default_factory=list)  # layers the quantizer left in float (ptq / qat)
    artifacts: list[Artifact] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    # Per-sample top-1 on the eval split of earlier networks every classifier artifact is also compared with
    # (paired, by verify): e.g. "unpruned", the student before the prune stage cut it.
    baselines: dict[str, Any] = field(default_factory=dict)
    report_sections: dict[str, str] = field(default_factory=dict)  # {title: markdown} a task adds to report.md
    progress: Callable[..., Any] | None = None

    @property
    def task_record(self):
        """The model's task record (edgekd/tasks.py): which code exports, verifies, benchmarks and trains it. Before
        the load stage has built the model, the recipe's task; a task the loader has yet to detect gets the generic
        parts (every task but the causal LM's declares its task in the recipe or is detected as a generic one)."""
        from edgekd.tasks import RECORDS, for_task

        task = self.model.task if self.model is not None else self.recipe.model.task
        return RECORDS[0] if task is None else for_task(task)

    @property
    def backend(self):
        """The profile's backend record (edgekd/backends): formats, runtimes, quantizer, verify policy."""
        from edgekd.backends import get

        return get(self.profile.backend)

    def decide(self, stage: str, subject: str, action: str, reason: str) -> None:
        self.decisions.append(Decision(stage, subject, action, reason))

    @property
    def budgets(self) -> Budgets:
        """The profile's budgets with the recipe's overrides applied key by key."""
        merged = self.profile.budgets.model_dump()
        if self.recipe.budgets is not None:
            merged.update({k: v for k, v in self.recipe.budgets.model_dump().items() if v is not None})
        return Budgets(**merged)
