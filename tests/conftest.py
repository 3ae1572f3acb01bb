"""Shared fixtures: small seeded models, built once per session (random weights, eval mode)."""
import os

import pytest
import torch
import torchvision
from torch import nn

# One torch thread unless asked otherwise: the test models are tiny, and on a busy 2-core machine
# OpenMP threads waiting on each other made single tests 25x slower. Tests that need more
# threads set them themselves and restore this value.
torch.set_num_threads(int(os.environ.get("CAPTUM_PRUNE_TEST_THREADS", "1")))
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("CAPTUM_PRUNE_TEST_THREADS", "1"))


class BiasFreeNet(nn.Module):
    """A small ReLU CNN without biases: positively homogeneous for any fixed masks.

    One ReLU module is reused (and in-place) to exercise per-call masks.
    """

    def __init__(self, channels: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 16, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, classes, bias=False)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def _seeded(factory, seed=0):
    torch.manual_seed(seed)
    return factory().eval()


@pytest.fixture(scope="session")
def bias_free_net():
    return _seeded(BiasFreeNet)


@pytest.fixture(scope="session")
def resnet18():
    return _seeded(lambda: torchvision.models.resnet18(num_classes=10))


def _small_head_vgg11():
    """torchvision's VGG11 (same conv stack, in-place ReLUs, max-pools and dropout) with a
    small bias-free classifier head, so tests in float64 stay fast."""
    model = torchvision.models.vgg11(num_classes=10)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.classifier = nn.Sequential(
        nn.Linear(512, 64), nn.ReLU(True), nn.Dropout(),
        nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(),
        nn.Linear(64, 10),
    )
    for layer in model.classifier:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0, 0.1)
            nn.init.zeros_(layer.bias)  # torchvision's VGG init: zero biases
    return model


@pytest.fixture(scope="session")
def vgg11():
    return _seeded(_small_head_vgg11)


@pytest.fixture
def images16():
    torch.manual_seed(1)
    return torch.randn(3, 3, 16, 16)
