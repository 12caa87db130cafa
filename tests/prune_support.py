"""A tiny CNN with what structured pruning must keep consistent: a residual add, a depthwise conv between two
pointwise ones, BatchNorm, a hidden Linear layer and a classifier head; sized for sklearn's 8x8 digits."""

from __future__ import annotations

import torch
from torch import nn


class ResidualDepthwiseNet(nn.Module):
    def __init__(self, width: int = 16, hidden: int = 32, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(  # MobileNetV2-style inverted residual: expand, depthwise, project
            nn.Conv2d(width, 2 * width, 1), nn.BatchNorm2d(2 * width), nn.ReLU6(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width), nn.BatchNorm2d(2 * width), nn.ReLU6(),
            nn.Conv2d(2 * width, width, 1), nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
                                  nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(2 * width, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.block(x)  # the residual add ties stem's and block.6's output channels together
        x = torch.flatten(self.pool(self.down(x)), 1)
        return self.classifier(torch.relu(self.hidden(x)))


def tiny_net(seed: int = 0) -> ResidualDepthwiseNet:
    torch.manual_seed(seed)
    return ResidualDepthwiseNet().eval()


PRUNE_RECIPE = """
name: prune_bad
model:
  source: builtin:digits_cnn
  task: image-classification
teacher:
  source: builtin:digits_cnn
  task: image-classification
data:
  source: builtin:digits
  calibration_samples: 16
  eval_samples: 32
  train_samples: 64
stages:
  distill:
    epochs: 1
  prune:
{prune}
  ptq: {{}}
  bench:
    enabled: false
"""
