"""The example's model: a tiny CNN that tells apart three kinds of generated 32 px images, and the one way an
image becomes its input. Imported by train.py and inference.py (both run from this folder)."""

import numpy as np
import torch
from torch import nn

SIZE = 32


class TinyNet(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def to_tensor(image) -> torch.Tensor:
    """A PIL image as the network's input: RGB, 32 x 32, values in [0, 1], channels first."""
    pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())
