"""A user's own data and model paths: validate refuses what export cannot load; images are preprocessed as named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.config.generate import recipe_for_model
from edgekd.config.schema import DataConfig, ModelSource
from edgekd.context import ModelBundle
from edgekd.data import load_data
from edgekd.errors import EdgekdError
from edgekd.models import load_bundle


def _validate(tmp_path, model: str, data: str, extra: str = ""):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: mine\nmodel:\n  source: {model}\n{extra}data:\n  source: {data}\n")
    return CliRunner().invoke(main, ["validate", str(recipe)])


def test_validate_refuses_unloadable_data(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.py").write_text("def build():\n    pass\n")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 16, 16), dtype=np.float32))
    cases = {"images:empty": "no images in the folder", "arrays:wrong.npy": "the model takes [1, 3, 32, 32]",
             "lines:missing.txt": "path not found"}
    for data, message in cases.items():
        result = _validate(tmp_path, "py:model.py:build", data, "  input_shape: [1, 3, 32, 32]\n")
        assert result.exit_code == 2 and message in result.output and "data.source" in result.output, result.output
    result = _validate(tmp_path, "py:nothere.py:build", "builtin:digits")
    assert result.exit_code == 2 and "model.source" in result.output and "nothere.py" in result.output
    np.save(tmp_path / "right.npy", np.zeros((4, 3, 32, 32), dtype=np.float32))
    result = _validate(tmp_path, "py:model.py:build", "arrays:right.npy", "  input_shape: [1, 3, 32, 32]\n")
    assert result.exit_code == 0, result.output


def test_image_folder_resize_crop_and_normalise(tmp_path):
    from PIL import Image

    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255  # red everywhere: channel 0 is 1.0 after scaling, the others 0.0
    Image.fromarray(pixels).save(tmp_path / "red.png")
    Image.fromarray(pixels).save(tmp_path / "red2.png")
    bundle = ModelBundle(name="m", task="image-classification", module=torch.nn.Identity(),
                         example_inputs=(torch.zeros(1, 3, 16, 16),), input_names=["image"])
    cfg = DataConfig(source="images:.", mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 0.5], resize=20)
    data = load_data(cfg, bundle, base_dir=tmp_path)
    x = data.eval.inputs[0][0]
    assert x.shape == (1, 3, 16, 16) and x.is_contiguous()
    assert torch.allclose(x[0, 0], torch.full((16, 16), 2.0)) and torch.allclose(x[0, 1], torch.full((16, 16), -1.0))
    assert len(data.eval) + len(data.calibration) == 2


def test_npz_labels_and_factory_next_to_recipe(tmp_path):
    (tmp_path / "my_models").mkdir()
    (tmp_path / "my_models" / "__init__.py").write_text("")
    (tmp_path / "my_models" / "net.py").write_text(
        "import torch\n\ndef build(width=4):\n    return torch.nn.Linear(3, width)\n")
    source = ModelSource(source="py:my_models.net:build", input_shape=[1, 3])
    bundle = load_bundle(source, DataConfig(source="builtin:digits"), base_dir=tmp_path)
    assert bundle.name == "net" and bundle.example_inputs[0].shape == (1, 3)
    with pytest.raises(EdgekdError, match="input_shape"):
        load_bundle(ModelSource(source="py:my_models/net.py:build"), DataConfig(source="x"), base_dir=tmp_path)
    np.savez(tmp_path / "d.npz", inputs=np.ones((6, 1, 3), dtype=np.float32), labels=np.arange(6) % 2)
    data = load_data(DataConfig(source="arrays:d.npz"), bundle, base_dir=tmp_path)
    assert data.num_classes == 2 and data.eval.labels is not None


def test_generated_recipe_names_and_defaults(tmp_path):
    (tmp_path / "cnn.py").write_text("def build():\n    pass\n")
    recipe = recipe_for_model(f"{tmp_path / 'cnn.py'}:build", None, None)
    assert recipe["name"] == "cnn_int8" and recipe["data"]["source"] == "builtin:photo_crops"
    with pytest.raises(EdgekdError, match="factory"):
        recipe_for_model(str(tmp_path / "cnn.py"), None, None)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text("{}")
    (tmp_path / "sentences.txt").write_text("a sentence\n")
    recipe = recipe_for_model(str(tmp_path / "bert"), str(tmp_path / "sentences.txt"), "sentence-embedding")
    assert recipe["model"]["source"].startswith("hf:") and recipe["data"]["source"].startswith("lines:")


def test_text_lines_tokenized_with_the_models_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from edgekd.models.builtin import minilm_folder

    (tmp_path / "sentences.txt").write_text("the film is a joy\n\n  a dull, lifeless script  \nit rains\n")
    bundle = ModelBundle(name="m", task="sentence-embedding", module=torch.nn.Identity(),
                         example_inputs=(torch.zeros(1, 16, dtype=torch.long),) * 2, input_names=["ids", "mask"],
                         meta={"tokenizer": AutoTokenizer.from_pretrained(minilm_folder()), "seq_len": 16})
    data = load_data(DataConfig(source="lines:sentences.txt"), bundle, base_dir=tmp_path)
    samples = data.eval.inputs + data.calibration.inputs
    assert len(samples) == 3 and all(ids.shape == (1, 16) and mask.shape == (1, 16) for ids, mask in samples)
    assert sorted(int(mask.sum()) for _, mask in samples) == [4, 7, 7]  # [CLS] + tokens + [SEP]; the blank line dropped
