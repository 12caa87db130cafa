"""The KD trainer on real sklearn digits: checkpoints, interrupt + --resume, teacher checks before training.

Small real pieces only: DigitsCNN students/teachers built from configs, the real digits split, the real loop.
"""

from __future__ import annotations


import pytest
import torch
from click.testing import CliRunner

from edgekd.config.schema import DistillStage
from edgekd.context import Split
from edgekd.errors import EdgekdError
from edgekd.models.builtin import DigitsCNN
from edgekd.train import checkpoint
from edgekd.train.loop import resolve_device, train_kd

from ..conftest import write_recipe
from ..kd_support import digits_splits, make_context


@pytest.fixture(scope="module")
def small():
    """300 real digits to train on, 100 to evaluate; a teacher that has seen the 300 for a few epochs."""
    data = digits_splits(n_eval=100, n_cal=8)
    data.train = Split(data.train.inputs[:300], labels=data.train.labels[:300])
    from edgekd.train.teachers import train_classifier

    torch.manual_seed(0)
    teacher = DigitsCNN(8)
    train_classifier(teacher, data.train, epochs=20, lr=1e-2, seed=0)  # ~0.9 held-out accuracy
    return data, teacher.eval()


def _cfg(**kw) -> DistillStage:
    base = dict(epochs=3, batch_size=64, lr=5e-3, seed=3, checkpoint_every=2, lr_schedule="cosine", warmup_steps=2,
                temperature={"start": 4.0, "end": 2.0, "schedule": "linear"}, hidden={
                    "pairs": [{"student": "features.2", "teacher": "features.2"}], "weight": 0.5})
    base.update(kw)
    return DistillStage(**base)


def _train(student, teacher, data, cfg, ckpt, resume=False, on_step=None):
    return train_kd(student, teacher, data.train, data.eval, cfg, task="image-classification", stage="distill",
                    ckpt_dir=ckpt, device=torch.device("cpu"), resume=resume,
                    example_inputs=(torch.zeros(1, 1, 8, 8),), on_step=on_step, quiet=True)


class Stop(Exception):
    pass


def test_interrupt_then_resume_continues_from_the_checkpoint_and_ends_like_an_uninterrupted_run(small, tmp_path):
    data, teacher = small
    cfg = _cfg(checkpoint_every=1000)  # checkpoints at epoch ends only
    torch.manual_seed(0)
    init = DigitsCNN(4).state_dict()

    full = DigitsCNN(4)
    full.load_state_dict(init)
    reference = _train(full, teacher, data, cfg, tmp_path / "full")
    steps_per_epoch = reference.steps // cfg.epochs
    assert [r["epoch"] for r in reference.history] == [1, 2, 3] and steps_per_epoch == 5  # 300 = 4 x 64 + 44

    # Interrupted two steps into epoch 2: the last checkpoint is the one written at the end of epoch 1.
    def stop_after(step):
        if step == steps_per_epoch + 2:
            raise Stop

    part = DigitsCNN(4)
    part.load_state_dict(init)
    with pytest.raises(Stop):
        _train(part, teacher, data, cfg, tmp_path / "run", on_step=stop_after)
    saved = checkpoint.load(tmp_path / "run")
    assert saved["epoch"] == 1 and saved["step"] == steps_per_epoch and saved["batch"] == 0
    assert len(saved["history"]) == 1
    adam = saved["optimizer"]["state"]
    assert adam and all(int(s["step"]) == steps_per_epoch for s in adam.values())  # optimizer moments are saved
    assert saved["projections"] is not None  # the hidden-state projection continues too

    resumed_student = DigitsCNN(4)  # a fresh process: weights come from the checkpoint, not from memory
    resumed = _train(resumed_student, teacher, data, cfg, tmp_path / "run", resume=True)
    assert resumed.resumed_from_step == steps_per_epoch
    assert resumed.steps == reference.steps
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for key, value in full.state_dict().items():
        assert torch.allclose(value.float(), resumed_student.state_dict()[key].float(), atol=1e-5), key
    assert resumed.history[-1]["loss"] == pytest.approx(reference.history[-1]["loss"], rel=1e-4)


def test_resume_mid_epoch_skips_the_batches_already_done(small, tmp_path):
    data, teacher = small
    cfg = _cfg(epochs=2, checkpoint_every=1, hidden=None)
    torch.manual_seed(1)
    init = DigitsCNN(4).state_dict()
    full = DigitsCNN(4)
    full.load_state_dict(init)
    _train(full, teacher, data, cfg, tmp_path / "full")

    def stop(step):
        if step == 7:  # epoch 2, batch 2 of 5, checkpoint just written
            raise Stop

    part = DigitsCNN(4)
    part.load_state_dict(init)
    with pytest.raises(Stop):
        _train(part, teacher, data, cfg, tmp_path / "run", on_step=stop)
    assert checkpoint.load(tmp_path / "run")["batch"] == 2
    again = DigitsCNN(4)
    result = _train(again, teacher, data, cfg, tmp_path / "run", resume=True)
    assert result.resumed_from_step == 7 and result.steps == 10
    for key, value in full.state_dict().items():
        assert torch.allclose(value.float(), again.state_dict()[key].float(), atol=1e-5), key


def test_resume_with_other_settings_is_refused(small, tmp_path):
    data, teacher = small
    cfg = _cfg(epochs=1, hidden=None)
    _train(DigitsCNN(4), teacher, data, cfg, tmp_path)
    with pytest.raises(EdgekdError) as err:
        _train(DigitsCNN(4), teacher, data, _cfg(epochs=1, hidden=None, lr=1e-2), tmp_path, resume=True)
    assert err.value.key == "stages.distill" and "other training settings" in str(err.value)


def test_checkpoint_round_trip_restores_rng_and_tensors(tmp_path):
    torch.manual_seed(5)
    model = DigitsCNN(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state(),
             "epoch": 2, "batch": 1, "step": 9, "history": [{"epoch": 1, "loss": 0.5}], "sums": {"n": 3}}
    expected = torch.rand(4)
    path = checkpoint.save(tmp_path, state)
    assert path.name == checkpoint.LAST and not list(tmp_path.glob("*.tmp*"))  # atomic: no temporary left
    loaded = checkpoint.load(tmp_path)
    checkpoint.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(4), expected)  # the random stream continues where it was saved
    fresh = DigitsCNN(4)
    fresh.load_state_dict(loaded["model"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key])
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert int(next(iter(opt2.state.values()))["step"]) == 1
    assert (loaded["epoch"], loaded["batch"], loaded["step"]) == (2, 1, 9)
    assert checkpoint.load(tmp_path / "nothing") is None


def test_distillation_lowers_the_loss_and_raises_held_out_accuracy(small, tmp_path):
    data, teacher = small
    torch.manual_seed(0)
    student = DigitsCNN(4)
    result = _train(student, teacher, data, _cfg(epochs=8, batch_size=32, lr=1e-2, hidden=None), tmp_path)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    accuracy = [r["eval"] for r in result.history]
    assert result.history[-1]["eval_metric"] == "accuracy" and accuracy[-1] > max(0.45, accuracy[0] + 0.2)
    temps = [r["temperature"] for r in result.history]
    assert temps[0] > temps[-1] == pytest.approx(2.0)  # linear 4 -> 2 over the run


def test_teacher_with_other_class_count_fails_before_training(small, tmp_path):
    from edgekd.stages import distill

    data, _ = small
    wrong = DigitsCNN(4, num_classes=7)
    ctx = make_context(tmp_path, {"distill": {"epochs": 1}}, DigitsCNN(4), wrong, data)
    with pytest.raises(EdgekdError) as err:
        distill.run(ctx, ctx.recipe.stages.distill)
    assert err.value.key == "teacher.source" and err.value.file == str(tmp_path / "recipe.yaml")
    assert "(7)" in str(err.value) and "(10)" in str(err.value) and err.value.code == 2
    assert not (tmp_path / "work" / "checkpoints").exists()  # nothing was trained or written


def test_device_resolution():
    assert resolve_device(None, "cpu").type == "cpu"
    assert resolve_device("cpu", "cuda").type == "cpu"  # the recipe's stage setting wins over the CLI default
    if not torch.cuda.is_available():
        with pytest.raises(EdgekdError) as err:
            resolve_device("cuda", "cpu")
        assert err.value.key == "--device"
        assert resolve_device("auto", "cpu").type == "cpu"


BAD_TEACHER = """
name: bad_teacher
model: {source: "builtin:digits_cnn", kwargs: {width: 4}}
teacher: {source: "hf:/nonexistent/teacher_folder"}
data: {source: "builtin:digits"}
stages:
  distill: {epochs: 1}
  bench: {enabled: false}
"""


def test_bad_teacher_path_exits_2_naming_file_and_key_before_anything_runs(tmp_path):
    from edgekd.cli import main

    recipe = write_recipe(tmp_path, BAD_TEACHER)
    result = CliRunner().invoke(main, ["export", "--profile", "x86-cpu", "--recipe", str(recipe), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "teacher.source" in result.output and str(recipe) in result.output
    assert "/nonexistent/teacher_folder" in result.output
    assert not (tmp_path / "out" / "bad_teacher").exists()


def test_mismatched_teacher_through_the_cli_exits_2_before_training(tmp_path):
    from edgekd.cli import main

    recipe = write_recipe(tmp_path, BAD_TEACHER.replace("name: bad_teacher", "name: other_classes").replace(
        '"hf:/nonexistent/teacher_folder"', '"py:tests.kd_support:seven_class_teacher"'))
    result = CliRunner().invoke(main, ["export", "--profile", "x86-cpu", "--recipe", str(recipe), "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "teacher.source" in result.output and str(recipe) in result.output
    assert "output classes (7) != student output classes (10)" in result.output
    assert not (tmp_path / "out" / "other_classes").exists()
    assert not (tmp_path / "out" / "other_classes.work" / "checkpoints").exists()
