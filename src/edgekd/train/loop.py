"""`train_kd`: the one training loop behind the distill and qat stages.

The two stages differ only in the model they hand in (an eager student, or a PT2E fake-quant GraphModule) and in how
that model switches between training and evaluation (`set_mode`); loss, schedules, clipping, checkpoints, resume,
DDP and progress are shared here. Causal LMs (task "causal-lm", edgekd.llm.qat) use the same loop: their samples
are windows of token ids, both models return logits for every position [B, T, V], and the loss is the per-token
KD of `causal_lm_kd_loss` (mean over tokens). Everything that varies across steps is a function of the global step (LR,
temperature) or is saved in the checkpoint (RNG, epoch accumulators), so an interrupted run resumed with --resume
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgekd.context import Split
from edgekd.errors import EdgekdError
from edgekd.train import checkpoint, hidden
from edgekd.train.replicas import ranks_agree, reproducible
from edgekd.train.loss import causal_lm_kd_loss, embedding_loss, kd_loss
from edgekd.train.schedules import lr_factor, temperature_at


@dataclass
class TrainResult:
    history: list[dict]  # one row per epoch: loss, kd, ce, hidden, lr, temperature, eval, eval_metric, seconds
    steps: int
    resumed_from_step: int | None
    seconds: float
    notes: list[str] = field(default_factory=list)  # things the caller should record as decisions
    projections: nn.Module | None = None


def _default_mode(model: nn.Module, training: bool, epoch: int) -> None:
    model.train(training)


def resolve_device(requested: str | None, ctx_device: str) -> torch.device:
    name = requested or ctx_device or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgekdError(f"CUDA was requested ({name!r}) but torch sees no CUDA device", key="--device",
                          hint="allowed here: cpu (or install a CUDA build of torch)")
    if name.startswith("cuda") and int(os.environ.get("LOCAL_RANK", -1)) >= 0:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _epoch_order(n: int, epoch: int, seed: int, rank: int, world: int, batch_size: int = 1) -> list[int]:
    """This rank's sample order for one epoch, a function of (seed, epoch) only.

    With several ranks, the one-process permutation is cut into global batches of `world * batch_size` and each
    rank takes its contiguous share of every global batch, so step k of a DDP run sees exactly the samples of step k
    of a one-process run with batch `world * batch_size` (the list is padded by wrapping, as DistributedSampler
    does, so every rank has as many samples)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    if world <= 1:
        return order
    total = math.ceil(n / world) * world
    order = (order * math.ceil(total / n))[:total]
    mine: list[int] = []
    for start in range(0, total, world * batch_size):
        chunk = order[start:start + world * batch_size]
        share = len(chunk) // world
        mine += chunk[rank * share:(rank + 1) * share]
    return mine


def _epoch_batches(split: Split, order: list[int], batch_size: int):
    labels = split.labels[order] if split.labels is not None else None
    shuffled = Split([split.inputs[i] for i in order], labels=labels)
    # A trailing batch of one sample breaks BatchNorm statistics in training; it is dropped (and reshuffled in).
    return [b for b in shuffled.batches(batch_size) if b[0][0].shape[0] > 1 or len(order) == 1]


def _to(values, device):
    return tuple(v.to(device) for v in values)


def evaluate(model: nn.Module, teacher: nn.Module, split: Split, task: str, device, batch_size: int = 64,
             ) -> tuple[float, str]:
    """Accuracy on labels; top-1 agreement with the teacher without labels; mean cosine to it for embeddings.

    Causal LMs: top-1 agreement with the teacher per token (every position of every window).
    """
    correct, total, cosine = 0.0, 0, 0.0
    with torch.no_grad():
        for inputs, labels in split.batches(batch_size):
            inputs = _to(inputs, device)
            out = model(*inputs)
            if task == "causal-lm":
                correct += float((out.argmax(-1) == teacher(*inputs).argmax(-1)).sum())
                total += out.shape[0] * out.shape[1]
                continue
            if task == "sentence-embedding":
                ref = teacher(*inputs)
                cosine += float(torch.nn.functional.cosine_similarity(out.float(), ref.float(), dim=-1).sum())
            elif labels is not None:
                correct += float((out.argmax(-1).cpu() == labels).sum())
            else:
                correct += float((out.argmax(-1) == teacher(*inputs).argmax(-1)).sum())
            total += out.shape[0]
    if task == "sentence-embedding":
        return cosine / max(total, 1), "cosine to teacher"
    if task == "causal-lm":
        return correct / max(total, 1), "top-1 agreement with teacher per token"
    return correct / max(total, 1), ("accuracy" if split.labels is not None else "top-1 agreement with teacher")


def train_kd(student: nn.Module, teacher: nn.Module, train: Split, eval_split: Split | None, cfg, *, task: str,
             stage: str, ckpt_dir: Path, device: torch.device, resume: bool, example_inputs: tuple,
             set_mode: Callable[[nn.Module, bool, int], None] = _default_mode,
             on_step: Callable[[int], None] | None = None, progress: Callable[[], None] | None = None,
             quiet: bool = False) -> TrainResult:
    """Train `student` in place against `teacher` with the KD loss; returns the per-epoch history.

    `cfg` is a DistillStage or QatStage. `set_mode(model, training, epoch)` switches train/eval (QAT uses it to move
    the exported graph and to freeze observers and BN late in training). `on_step(step)` runs after each optimizer
    step (tests interrupt training there). Checkpoints go to `ckpt_dir/last.pt`.
    """
    started = time.perf_counter()
    if train is None or len(train) < 2:
        raise EdgekdError("training needs a train split with at least 2 samples", key="data.train_samples",
                          hint="set data.train_samples (the digits and text sources provide labelled train splits)")
    rank, world = _distributed()
    with reproducible(cfg.seed, getattr(cfg, "threads", None)) as threads:
        result = _train(student, teacher, train, eval_split, cfg, task=task, stage=stage, ckpt_dir=ckpt_dir,
                        device=device, resume=resume, example_inputs=example_inputs, set_mode=set_mode,
                        on_step=on_step, progress=progress, quiet=quiet, rank=rank, world=world)
    result.seconds = time.perf_counter() - started
    result.notes.append(f"deterministic algorithms on, {threads} intra-op thread(s), seed {cfg.seed}: a rerun on "
                        "this host with these settings gives the same weights")
    return result


def _train(student, teacher, train, eval_split, cfg, *, task, stage, ckpt_dir, device, resume, example_inputs,
           set_mode, on_step, progress, quiet, rank, world) -> TrainResult:
    started = time.perf_counter()
    notes: list[str] = []
    student.to(device)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    example = _to(example_inputs, device)

    match = None
    hidden_cfg = getattr(cfg, "hidden", None)
    if hidden_cfg is not None:
        set_mode(student, False, 0)
        match = hidden.attach(student, teacher, hidden_cfg.pairs, hidden_cfg.weight, example,
                              key=f"stages.{stage}.hidden.pairs")
        match.projections.to(device)

    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    params = [p for p in student.parameters() if p.requires_grad]
    if match is not None:
        params += list(match.projections.parameters())
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    labels_present = train.labels is not None and task not in ("sentence-embedding", "causal-lm")
    if task not in ("sentence-embedding", "causal-lm") and not labels_present and cfg.alpha < 1.0:
        notes.append(f"the train split has no labels: alpha={cfg.alpha} ignored, the KD term gets all the weight")
    per_rank = math.ceil(len(train) / world)
    full, rest = divmod(per_rank, cfg.batch_size)
    steps_per_epoch = max(full + (1 if rest > 1 else 0), 1)  # same rule as _epoch_batches
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, cfg.lr_schedule, cfg.warmup_steps))

    settings = cfg.model_dump(exclude={"enabled", "device", "checkpoint_every"})
    settings.update(train_samples=len(train), world=world, stage=stage)
    print_ = _printer(quiet or rank != 0)
    state = {"epoch": 0, "batch": 0, "step": 0, "history": [], "sums": _zero_sums()}
    resumed_from = None
    if resume:
        saved = checkpoint.load(ckpt_dir)
        if saved is None:
            notes.append(f"--resume: no checkpoint in {ckpt_dir}, training from the start")
        else:
            if saved.get("fingerprint") != checkpoint.fingerprint(settings):
                raise EdgekdError(f"the checkpoint in {ckpt_dir} was made with other training settings",
                                  key=f"stages.{stage}", hint="rerun without --resume to start over")
            student.load_state_dict(saved["model"])
            if match is not None and saved.get("projections") is not None:
                match.projections.load_state_dict(saved["projections"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            checkpoint.set_rng_state(saved["rng"])
            state = {k: saved[k] for k in ("epoch", "batch", "step", "history", "sums")}
            resumed_from = state["step"]
            notes.append(f"resumed from step {resumed_from} (epoch {state['epoch'] + 1}, batch {state['batch']})")
            print_(f"[{stage}] resumed from step {resumed_from}")

    def save_checkpoint() -> None:
        if rank != 0:
            return
        checkpoint.save(ckpt_dir, {
            "model": student.state_dict(), "projections": match.projections.state_dict() if match else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": checkpoint.rng_state(),
            "fingerprint": checkpoint.fingerprint(settings), **state})

    bar = EpochBar(stage, cfg.epochs, steps_per_epoch, enabled=progress is None and not quiet and rank == 0)
    try:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            epoch_started = time.perf_counter()
            set_mode(student, True, epoch)
            batches = _epoch_batches(train, _epoch_order(len(train), epoch, cfg.seed, rank, world,
                                                         cfg.batch_size), cfg.batch_size)
            bar.start_epoch(epoch, state["batch"])
            for index, (inputs, labels) in enumerate(batches):
                if index < state["batch"]:
                    continue  # done before the interruption; the order is a function of (seed, epoch)
                inputs = _to(inputs, device)
                temperature = temperature_at(state["step"], total_steps, cfg.temperature.start,
                                             cfg.temperature.end, cfg.temperature.schedule)
                with torch.no_grad():
                    teacher_out = teacher(*inputs)
                out = model(*inputs)
                if task == "sentence-embedding":
                    loss = kd = embedding_loss(out, teacher_out, cfg.embedding_loss)
                    ce = torch.zeros((), device=device)
                elif task == "causal-lm":
                    _check_causal_lm(out, teacher_out, inputs[0], stage)
                    # The labels of a causal LM are its own tokens shifted by one (the CE term, alpha < 1).
                    loss, kd, ce = causal_lm_kd_loss(out, teacher_out, inputs[0], cfg.alpha, temperature)
                else:
                    _check_widths(out, teacher_out, stage)
                    loss, kd, ce = kd_loss(out, teacher_out, labels.to(device) if labels_present else None,
                                           cfg.alpha, temperature)
                h = hidden.hidden_loss(match) if match is not None else torch.zeros((), device=device)
                loss = loss + h
                if not torch.isfinite(loss):
                    raise EdgekdError(f"the training loss became {float(loss)} at step {state['step']} (lr {cfg.lr})",
                                      key=f"stages.{stage}.lr", hint="lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                n = inputs[0].shape[0]
                sums = state["sums"]
                for key, value in (("loss", loss), ("kd", kd), ("ce", ce), ("hidden", h)):
                    sums[key] += float(value.detach()) * n
                sums["n"] += n
                state["step"] += 1
                state["batch"] = index + 1
                bar.advance(float(loss.detach()))
                if progress:
                    progress()
                if state["step"] % cfg.checkpoint_every == 0:
                    save_checkpoint()
                if on_step:
                    on_step(state["step"])
            row = {"epoch": epoch + 1, **{k: state["sums"][k] / max(state["sums"]["n"], 1)
                                          for k in ("loss", "kd", "ce", "hidden")},
                   "lr": scheduler.get_last_lr()[0], "temperature": temperature_at(
                       max(state["step"] - 1, 0), total_steps, cfg.temperature.start, cfg.temperature.end,
                       cfg.temperature.schedule),
                   "steps": state["step"], "seconds": time.perf_counter() - epoch_started}
            if eval_split is not None and len(eval_split):
                set_mode(student, False, epoch)
                # Per-position LM logits are [B, T, vocab]: evaluate LMs in training-sized batches, not 64 windows.
                row["eval"], row["eval_metric"] = evaluate(student, teacher, eval_split, task, device,
                                                           batch_size=cfg.batch_size if task == "causal-lm" else 64)
            state["history"].append(row)
            state.update(epoch=epoch + 1, batch=0, sums=_zero_sums())
            save_checkpoint()
            bar.end_epoch(row)
            print_(_epoch_line(stage, row, cfg.epochs))
    finally:
        bar.close()
        if match is not None:
            hidden.detach_hooks(match)
    set_mode(student, False, cfg.epochs)
    if world > 1:
        notes.append(ranks_agree(student, rank, world))
    return TrainResult(history=state["history"], steps=state["step"], resumed_from_step=resumed_from,
                       seconds=time.perf_counter() - started, notes=notes,
                       projections=match.projections if match is not None else None)


def _zero_sums() -> dict:
    return {"loss": 0.0, "kd": 0.0, "ce": 0.0, "hidden": 0.0, "n": 0}


def _check_widths(out: torch.Tensor, teacher_out: torch.Tensor, stage: str) -> None:
    if out.shape[-1] != teacher_out.shape[-1]:
        raise EdgekdError(f"the student outputs {out.shape[-1]} classes and the teacher {teacher_out.shape[-1]}",
                          key="teacher.source", hint="KD needs the same label space; give both the same num_labels")


def _check_causal_lm(out: torch.Tensor, teacher_out: torch.Tensor, input_ids: torch.Tensor, stage: str) -> None:
    """Causal-LM KD needs a distribution per token from both models, over the same vocabulary."""
    if out.dim() != 3 or tuple(out.shape[:2]) != tuple(input_ids.shape):
        raise EdgekdError(f"causal-LM KD needs the student's logits for every position [batch, tokens, vocab], got "
                          f"{list(out.shape)} for input ids {list(input_ids.shape)}", key=f"stages.{stage}",
                          hint="pass a module returning all positions (edgekd.llm.qat.AllLogits), not the bundle's "
                               "last-position module")
    if teacher_out.shape != out.shape:
        raise EdgekdError(f"the teacher's logits {list(teacher_out.shape)} do not match the student's "
                          f"{list(out.shape)}", key="teacher.source",
                          hint="token-level KD needs a teacher with the same tokenizer and vocabulary size")


def _epoch_line(stage: str, row: dict, epochs: int) -> str:
    text = (f"[{stage}] epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  kd {row['kd']:.4f}  "
            f"ce {row['ce']:.4f}")
    if row.get("hidden"):
        text += f"  hidden {row['hidden']:.4f}"
    if "eval" in row:
        text += f"  {row['eval_metric']} {row['eval']:.4f}"
    return text


def _printer(quiet: bool):
    def emit(text: str) -> None:
        if not quiet:
            # sys.stderr is looked up at call time: under the CLI's live progress display it is redirected above it.
            print(text, file=sys.stderr, flush=True)
    return emit


class EpochBar:
    """A rich progress bar per epoch (steps, running loss, last eval metric) when no outer progress display runs
    and stderr is a terminal; otherwise `progress` stays None and the callers print one line per epoch."""

    def __init__(self, stage: str, epochs: int, steps: int, enabled: bool):
        self.stage, self.epochs, self.steps, self.enabled = stage, epochs, steps, enabled
        self.progress = None
        self.task = None
        self.running = 0.0
        self.count = 0
        from edgekd.report.progress import stderr_is_terminal

        if enabled and stderr_is_terminal():  # elsewhere a live bar leaves a cut-off frame; the callers print lines
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[metric]}"),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            try:
                self.progress.start()
            except Exception:  # noqa: BLE001 - rich.errors.LiveError: another live display owns the terminal
                self.progress = None

    def start_epoch(self, epoch: int, done: int) -> None:
        self.running, self.count = 0.0, 0
        if self.progress is not None:
            self.task = self.progress.add_task(f"{self.stage} epoch {epoch + 1}/{self.epochs}", total=self.steps,
                                               completed=done, loss="-", metric="")

    def advance(self, loss: float) -> None:
        self.running += loss
        self.count += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=f"{self.running / self.count:.4f}")

    def end_epoch(self, row: dict) -> None:
        if self.progress is not None and "eval" in row:
            self.progress.update(self.task, metric=f"{row['eval_metric']} {row['eval']:.4f}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
