"""Teachers trained here: the real all-MiniLM-L6-v2 fine-tuned into a sentiment classifier on the recipe's own train
split (a tiny slice here), cached by its settings, and checked against a student the way the KD stages check it."""

from __future__ import annotations

import pytest
import torch

from edgekd.train import teachers

DATA = {"source": "builtin:rotten_tomatoes", "train_samples": 24, "calibration_samples": 4, "eval_samples": 8,
        "seq_len": 16}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path))
    return tmp_path / "teachers"


def test_minilm_teacher_trains_on_the_recipe_split_then_loads_from_the_cache(cache, monkeypatch):
    first = teachers.minilm_teacher(DATA, epochs=1, lr=1e-3, batch_size=8)
    assert first.task == "text-classification" and first.name == "minilm_l6_teacher"
    assert len(first.module.embedder.encoder.encoder.layer) == 6  # the whole L6, not a pruned copy
    cached = sorted(cache.glob("minilm_l6_cls_*.pt"))
    assert len(cached) == 1 and cached[0].name in first.meta["source"]

    calls = []
    monkeypatch.setattr(teachers, "train_classifier", lambda *a, **k: calls.append(a))
    again = teachers.minilm_teacher(DATA, epochs=1, lr=1e-3, batch_size=8)
    assert calls == []  # same settings: loaded, not trained again
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, again.module.state_dict()[key]), key

    other = teachers.minilm_teacher({**DATA, "seed": 1}, epochs=1, lr=1e-3, batch_size=8)
    assert len(calls) == 1 and other.name == "minilm_l6_teacher"  # another data split is another teacher
    assert len(list(cache.glob("minilm_l6_cls_*.pt"))) == 2  # cached under its own key beside the first


def test_train_classifier_fits_two_input_text_samples(cache):
    """Fine-tuning must learn from (input_ids, attention_mask) pairs: loss on the train split goes down."""
    from edgekd.config.schema import DataConfig
    from edgekd.data import load_data
    from edgekd.models.builtin import minilm_l6

    torch.manual_seed(0)
    bundle = minilm_l6(DataConfig(**DATA), layers=1, task="text-classification", num_labels=2)
    train = load_data(DataConfig(**DATA), bundle).train

    def loss() -> float:
        inputs, labels = next(train.batches(len(train)))
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(bundle.module(*inputs), labels))

    before = loss()
    teachers.train_classifier(bundle.module, train, epochs=4, lr=1e-3, seed=0, batch_size=8)
    assert not bundle.module.training
    assert loss() < 0.5 * before
