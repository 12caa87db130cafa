"""One record per task family (classifier, encoder, causal LM): what export, verify, bench and qat do for it.

The record is chosen once from the model's task (`Context.task_record`) and every stage runs its part through the
same STAGES of edgekd/pipeline.py: a causal LM is exported with a KV cache, verified by perplexity and greedy decoding
and benchmarked by tokens/s (edgekd/llm/stages.py), the rest by the generic stage code. Parts are "module:function"
names imported when called, so `import edgekd` stays light (rule 8 of docs/architecture.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from edgekd.errors import EdgekdError

GENERIC_EXPORT = "edgekd.stages.export:export_artifacts"
GENERIC_VERIFY = "edgekd.stages.verify:verify_artifacts"
GENERIC_BENCH = "edgekd.bench.core:bench_artifacts"
GENERIC_QAT = ("edgekd.stages.qat:check_pt2e", "edgekd.stages.qat:run_pt2e")


@dataclass(frozen=True)
class TaskRecord:
    family: str
    tasks: tuple[str, ...]           # the `task` values (recipe model.task, ModelBundle.task) it serves
    export: str                      # (ctx, cfg) -> ctx
    verify: str
    bench: str
    qat_check: str                   # (ctx, cfg) -> None, before anything runs
    qat: str                         # (ctx, cfg) -> ctx
    labels: bool                     # top-1 against labels or fp32's top-1: paired accuracy statistics apply
    example_inputs: bool             # writes inputs.npz beside the artifacts (fixed-shape inputs for `edgekd bench`)

    def part(self, name: str) -> Callable:
        module, _, function = getattr(self, name).partition(":")
        return getattr(importlib.import_module(module), function)


RECORDS = (
    TaskRecord("classifier", ("image-classification", "text-classification"), GENERIC_EXPORT, GENERIC_VERIFY,
               GENERIC_BENCH, *GENERIC_QAT, labels=True, example_inputs=True),
    TaskRecord("encoder", ("sentence-embedding",), GENERIC_EXPORT, GENERIC_VERIFY, GENERIC_BENCH, *GENERIC_QAT,
               labels=False, example_inputs=True),
    TaskRecord("causal-lm", ("causal-lm",), "edgekd.llm.stages:export_llm_artifacts", "edgekd.llm.stages:verify_llm",
               "edgekd.llm.stages:bench_llm", "edgekd.llm.qat:check", "edgekd.llm.qat:run", labels=False,
               example_inputs=False),
)
BY_TASK = {task: record for record in RECORDS for task in record.tasks}


def for_task(task: str | None) -> TaskRecord:
    try:
        return BY_TASK[task or ""]
    except KeyError:
        raise EdgekdError(f"unknown task {task!r}", key="model.task", hint=f"allowed: {', '.join(BY_TASK)}") from None
