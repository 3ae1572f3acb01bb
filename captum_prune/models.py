r"""
A small residual CNN for the embedded digits data.

Its blocks mirror torchvision's ``BasicBlock``: one ``nn.ReLU(inplace=True)`` module is
called twice per block, so attribution code is exercised on reused and in-place
activations, as on real ResNets.
"""
from typing import Optional, Sequence

import torch
from torch import nn, Tensor

__all__ = ["BasicBlock", "DigitsResNet", "build_digits_model"]


class BasicBlock(nn.Module):
    r"""
    Residual block ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` whose single
    in-place ``relu`` module runs twice per forward pass.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int, optional): Stride of the first convolution and of the shortcut.
                    Default: 1
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DigitsResNet(nn.Module):
    r"""
    A ResNet for small images: a 3x3 stem, one :class:`BasicBlock` per stage (the first
    stage keeps the resolution, each later one halves it), global average pooling and a
    linear classifier.

    Args:
        in_channels (int, optional): Image channels. Default: 3
        num_classes (int, optional): Number of logits. Default: 10
        widths (sequence of int, optional): Channels of each stage; the stem uses the
                    first. Default: ``(16, 32, 48)``

    Examples::

        >>> import torch
        >>> from captum_prune.models import DigitsResNet
        >>> DigitsResNet()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 48),
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        previous = widths[0]
        for i, width in enumerate(widths):
            stages.append(BasicBlock(previous, width, stride=1 if i == 0 else 2))
            previous = width
        # Named layer1, layer2, ... as in torchvision, so layer names carry over.
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_digits_model(
    channels: int = 3, seed: Optional[int] = None, widths: Sequence[int] = (16, 32, 48)
) -> DigitsResNet:
    r"""
    Builds the default :class:`DigitsResNet` for :func:`~captum_prune.data.make_digits_canvas`
    images. This is the model factory used for training and for ROAR retraining.

    Args:
        channels (int, optional): Image channels, 1 or 3. Default: 3
        seed (int, optional): If given, the weights are initialised from
                    ``torch.manual_seed(seed)``'s stream, leaving the global RNG state
                    untouched. Default: None (the global RNG as is)
        widths (sequence of int, optional): Stage widths. Default: ``(16, 32, 48)``

    Returns:
        DigitsResNet: A freshly initialised model in training mode.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if seed is None:
        return DigitsResNet(in_channels=channels, widths=widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsResNet(in_channels=channels, widths=widths)
