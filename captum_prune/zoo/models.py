r"""
A small residual CNN for the embedded digits data, the paper's CIFAR ResNet-8, and the models
named on the command line.

:class:`DigitsResNet`'s blocks mirror torchvision's ``BasicBlock``: one
``nn.ReLU(inplace=True)`` module is called twice per block, so attribution code is exercised on
reused and in-place activations, as on real ResNets. :func:`model_factory` and
:func:`load_weights` build a user's model (a torchvision name or ``module:factory``) and load
its state-dict file; ``model_factory("resnet8", ...)`` builds :class:`CifarResNet8`.
"""
import importlib
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "DigitsResNet",
    "CifarResNet8",
    "ZOO_MODELS",
    "build_digits_model",
    "model_factory",
    "load_weights",
    "describe_model",
]


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
        >>> from captum_prune.zoo.models import DigitsResNet
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


class CifarResNet8(DigitsResNet):
    r"""
    The CIFAR ResNet-8 of the pathway-gradient paper's ROAR and CIFAR-10 LeRF experiments, as
    in the authors' benchmark code (RoarTorch, ``src/models/classification/PytorchCifarResnet.py``,
    ``ResNet8``): a 3x3 stem of 64 channels, one basic block per stage with 64, 128 and 256
    channels (strides 1, 2, 2; a 1x1 convolution with BatchNorm on the shortcut where the shape
    changes), global average pooling and a linear classifier; about 1.2 million parameters.

    It is :class:`DigitsResNet` with those widths, so it is fully convolutional (it classifies
    any input of at least 8x8 pixels, e.g. a 2x2 grid of CIFAR images) and each block reuses
    one ReLU module, as RoarTorch's does (there it is not in place; here it is, which changes
    no value). The convolutions are Kaiming-initialised (RoarTorch keeps PyTorch's default).

    Args:
        in_channels (int, optional): Image channels (1 for MNIST-like data). Default: 3
        num_classes (int, optional): Number of logits. Default: 10

    Examples::

        >>> import torch
        >>> from captum_prune.zoo.models import CifarResNet8
        >>> model = CifarResNet8()
        >>> model(torch.zeros(2, 3, 32, 32)).shape, model(torch.zeros(1, 3, 64, 64)).shape
        (torch.Size([2, 10]), torch.Size([1, 10]))
        >>> sum(p.numel() for p in model.parameters())
        1227594
    """

    WIDTHS = (64, 128, 256)

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__(in_channels=in_channels, num_classes=num_classes, widths=self.WIDTHS)


#: Models of this package that :func:`model_factory` builds by name:
#: ``name -> cls(in_channels, num_classes)``.
ZOO_MODELS: Dict[str, Callable[[int, int], nn.Module]] = {
    "resnet8": CifarResNet8,
}


def build_digits_model(
    channels: int = 3, seed: Optional[int] = None, widths: Sequence[int] = (16, 32, 48)
) -> DigitsResNet:
    r"""
    Builds the default :class:`DigitsResNet` for :func:`~captum_prune.zoo.data.make_digits_canvas`
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


def model_factory(
    spec: str, num_classes: int, in_channels: int = 3
) -> Callable[[int], nn.Module]:
    r"""
    ``seed -> freshly initialised model`` for a model named on the command line: a model of
    this package (:data:`ZOO_MODELS`: ``"resnet8"``, the paper's :class:`CifarResNet8`), a
    torchvision classification architecture (``"resnet18"``, built with ``weights=None`` and
    ``num_classes``) or ``"module:factory"``, an importable callable returning an
    ``nn.Module``. The global RNG state is left as it was.

    Args:
        spec (str): The name.
        num_classes (int): Number of logits.
        in_channels (int, optional): Image channels, for the models of :data:`ZOO_MODELS`
                    (torchvision's and a user's factory take their own). Default: 3

    Raises:
        ValueError: If the name is none of these, or the factory does not return an
                    ``nn.Module``.
    """
    if spec in ZOO_MODELS:
        zoo_cls = ZOO_MODELS[spec]

        def build() -> nn.Module:
            return zoo_cls(in_channels=in_channels, num_classes=num_classes)
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(
                f"{spec}: cannot import {attr!r} from {module_name!r} ({error})"
            ) from None
        if not callable(factory):
            raise ValueError(f"{spec}: {attr!r} is not callable")

        def build() -> nn.Module:
            return factory()
    else:
        import torchvision

        if spec not in set(torchvision.models.list_models(module=torchvision.models)):
            raise ValueError(
                f"{spec!r} is not a model of this package ({', '.join(ZOO_MODELS)}), a "
                "torchvision classification model nor a module:factory; torchvision has e.g. "
                "resnet18, vgg11, mobilenet_v3_small"
            )

        def build() -> nn.Module:
            return torchvision.models.get_model(spec, weights=None, num_classes=num_classes)

    def fresh(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"{spec}: the factory returned {type(model).__name__}, not an nn.Module"
            )
        return model

    return fresh


def load_weights(model: nn.Module, path: Union[str, os.PathLike]) -> nn.Module:
    r"""
    Loads a state-dict file (written by ``torch.save(model.state_dict(), path)``, or a dict
    with a ``"state_dict"`` entry) into ``model``, on the CPU and with ``weights_only=True``.

    Raises:
        ValueError: If the file is missing, unreadable, not a state dict, or does not fit.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable PyTorch file ({error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the model: {str(error)[:400]}") from None
    return model


def describe_model(model: nn.Module) -> str:
    r"""Class, stage widths (of a :class:`DigitsResNet`, read off its BatchNorm layers) and
    parameter count, e.g. ``"DigitsResNet, widths (8, 16, 24), 15338 parameters"``."""
    name = type(model).__name__
    if isinstance(model, DigitsResNet):
        widths = [getattr(model, f"layer{i}").bn2.num_features
                  for i in range(1, model.num_stages + 1)]
        name += f", widths {tuple(widths)}"
    n = sum(p.numel() for p in model.parameters())
    return f"{name}, {n} parameters"

