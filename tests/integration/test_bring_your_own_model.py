"""`edgekd export --model PATH` without a recipe: a CNN in a Python file, a Hugging Face folder and a torch.export
program each give artifacts verified in their real runtimes; image folders and .npy arrays feed them; validate
refuses a data folder that is not there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekd.cli import main

from ..conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]
SMALL = ["--set", "data.calibration_samples=8", "--set", "data.eval_samples=8", "--skip", "bench"]


def _export(args: list[str], out: Path):
    result = CliRunner().invoke(main, ["export", "--profile", "snapdragon865", "--out", str(out), *args, *SMALL],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _verified(folder: Path, stem: str) -> dict:
    """Every artifact is named after the model file and carries parity measured in its runtime."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["artifacts"], "no artifacts"
    for artifact in manifest["artifacts"]:
        assert Path(artifact["path"]).name.startswith(stem), artifact["path"]
        assert artifact["parity"]["samples"] >= 4
        if artifact["precision"] == "fp32":
            assert artifact["parity"]["cosine_mean"] > 0.999
    assert {a["format"] for a in manifest["artifacts"]} == {"pte", "onnx"}
    return manifest


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from make_images import main as make_images
    finally:
        sys.path.remove(str(ROOT / "examples"))
    folder = tmp_path_factory.mktemp("byom") / "images"
    make_images(str(folder))
    return folder


def test_cnn_file_with_image_folder(tmp_path, images):
    result = _export(["--model", f"{ROOT / 'examples' / 'tiny_cnn.py'}:build", "--data", str(images)],
                     tmp_path / "out")
    folder = tmp_path / "out" / "tiny_cnn_int8"
    manifest = _verified(folder, "tiny_cnn")
    assert manifest["metrics"]["data"]["source"].startswith("images in")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert recipe["data"]["source"] == f"images:{images.resolve()}" and "recipe.yaml" in result.output
    assert manifest["recipe"]["path"] == str(folder / "recipe.yaml")
    # the written recipe is a recipe: the next run starts from it
    again = CliRunner().invoke(main, ["validate", str(folder / "recipe.yaml")])
    assert again.exit_code == 0, again.output


def test_pt2_program_with_npy_arrays(tmp_path, images):
    import torch

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from tiny_cnn import build
    finally:
        sys.path.remove(str(ROOT / "examples"))
    module, example = build(image_size=32)
    torch.export.save(torch.export.export(module, example), tmp_path / "cnn_program.pt2")
    from edgekd.data.images import load_photos, random_crops

    rng = np.random.default_rng(0)
    crops = [c for _, photo in load_photos()[:4] for c in random_crops(photo, 4, 32, rng)]
    np.save(tmp_path / "inputs.npy", (torch.cat(crops) / 255.0).numpy())
    _export(["--model", str(tmp_path / "cnn_program.pt2"), "--data", str(tmp_path / "inputs.npy")], tmp_path / "out")
    manifest = _verified(tmp_path / "out" / "cnn_program_int8", "cnn_program")
    assert manifest["metrics"]["data"]["source"].startswith("arrays in")


def test_hugging_face_folder(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from edgekd.models.builtin import minilm_folder

    folder = tmp_path / "tiny_bert"
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _export(["--model", str(folder), "--task", "sentence-embedding", "--set", "data.seq_len=32"], tmp_path / "out")
    _verified(tmp_path / "out" / "tiny_bert_int8", "tiny_bert")


def test_validate_refuses_missing_data_folder(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: mine\nmodel:\n  source: py:model.py:build\ndata:\n  source: images:photos\n")
    (tmp_path / "model.py").write_text("def build():\n    pass\n")
    result = CliRunner().invoke(main, ["validate", str(recipe)])
    assert result.exit_code == 2
    assert "data.source" in result.output and "photos" in result.output and "not found" in result.output
