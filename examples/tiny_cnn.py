"""A small CNN defined in a file of its own: the README's "Bring your own model" example.

    edgekd export --profile snapdragon865 --model examples/tiny_cnn.py:build --data examples/images --skip bench

`build` returns the module and one example input, so edgekd knows the input shape without a recipe. The weights are
random here; a real project loads its trained state_dict in the factory (torch.load(..., weights_only=True)).
"""

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def build(num_classes: int = 10, image_size: int = 64):
    torch.manual_seed(0)
    return TinyCNN(num_classes).eval(), (torch.zeros(1, 3, image_size, image_size),)
