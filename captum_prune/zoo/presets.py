r"""
Benchmark presets: what to run on which data and model.

- :data:`PAPER`: the pathway-gradient paper's CIFAR-10 protocol (method spec §4.2-4.3), for a
  user with CIFAR-10 on disk: the CIFAR ResNet-8 trained with the authors' recipe
  (:class:`~captum_prune.zoo.training.CifarRecipe`), LeRF at 1..10% of the pixels and ROAR at
  10/30/50/70/90%, retraining with the same recipe. :func:`prepare_paper` loads the data,
  trains (or loads from the cache) the model and returns what the protocols need.
- :data:`SCENE`: the embedded default redesigned so that methods separate: digits among
  distractor digits (:func:`~captum_prune.zoo.data.make_digits_scene`) and finer fractions.

Presets are plain data; the protocols themselves are in :mod:`captum_prune.evaluation`.
"""
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prune.zoo.datasets import LoadedDataset, load_dataset
from captum_prune.zoo.models import model_factory
from captum_prune.zoo.training import (
    CifarRecipe,
    load_or_train_cifar_model,
    train_with_cifar_recipe,
)

__all__ = ["PaperPreset", "PAPER", "PaperSetup", "prepare_paper", "ScenePreset", "SCENE"]

_PAPER_METHODS = (
    "PrunedGradient",                        # NeuronMCT
    "PrunedGradient[integrated_gradients]",  # NeuronIntGrad
    "GradCAM",
    "GuidedBackprop",
    "InputXGradient",                        # "InputMCT"
    "IntegratedGradients",                   # "InputIntGrad"
    "Saliency",                              # "Gradients"
)


@dataclass(frozen=True)
class PaperPreset:
    r"""
    The paper's CIFAR-10 protocol (method spec §4.2 and §4.3; RoarTorch's
    ``config/roar_cifar10_resnet8.yml``).

    Attributes:
        name (str): ``"paper"``.
        data (str): Dataset name for :func:`~captum_prune.zoo.datasets.load_dataset`.
        model (str): Model name for :func:`~captum_prune.zoo.models.model_factory`.
        recipe (CifarRecipe): Training of the model and of every ROAR retraining.
        methods (tuple of str): Names in ``captum_prune.cli.methods.METHODS``: the paper's
                    NeuronMCT, NeuronIntGrad, GradCAM, GBP, InputMCT, InputIntGrad, Gradients.
        sparsity (float): PrunedGradient's sparsity (the authors' default 0.85).
        lerf_fractions (tuple of float): 1% to 10%.
        lerf_images (int): Test images for LeRF (the paper: 2000 random ImageNet images; the
                    number for CIFAR-10 is not stated, so the same).
        lerf_baseline (float): 0 in normalised space, the dataset-mean colour (§4.2).
        roar_fractions (tuple of float): 10, 30, 50, 70, 90%.
        roar_seeds (tuple of int): One retraining per (method, fraction), as in the paper.
        target (str): ``"predicted"``: maps and LeRF for the predicted class.
        n_train, n_test (int or None): Use only the first images of each split (None: all);
                    for quick runs and tests.
    """

    name: str = "paper"
    data: str = "cifar10"
    model: str = "resnet8"
    recipe: CifarRecipe = field(default_factory=CifarRecipe)
    methods: Tuple[str, ...] = _PAPER_METHODS
    sparsity: float = 0.85
    lerf_fractions: Tuple[float, ...] = tuple(round(0.01 * k, 2) for k in range(1, 11))
    lerf_images: int = 2000
    lerf_baseline: float = 0.0
    roar_fractions: Tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    roar_seeds: Tuple[int, ...] = (0,)
    target: str = "predicted"
    n_train: Optional[int] = None
    n_test: Optional[int] = None

    def with_overrides(self, **changes: Any) -> "PaperPreset":
        r"""A copy with fields replaced; ``epochs=...`` (and other recipe fields) change the
        recipe, e.g. ``PAPER.with_overrides(epochs=1, n_train=64, roar_fractions=(0.5,))``."""
        recipe_fields = set(CifarRecipe.__dataclass_fields__)
        recipe_changes = {k: changes.pop(k) for k in list(changes) if k in recipe_fields}
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; the preset has "
                             f"{sorted(self.__dataclass_fields__)} and the recipe "
                             f"{sorted(recipe_fields)}")
        return replace(self, recipe=replace(self.recipe, **recipe_changes), **changes)


#: The paper's CIFAR-10 protocol.
PAPER = PaperPreset()


@dataclass
class PaperSetup:
    r"""
    What the protocols of :class:`PaperPreset` need, from :func:`prepare_paper`.

    Attributes:
        model (nn.Module): The trained model, on the CPU in eval mode.
        info (dict): Training record and cache entry (see
                    :func:`~captum_prune.zoo.training.load_or_train_cifar_model`).
        train, test (LoadedDataset): The two splits.
        train_images, train_labels, test_images, test_labels (Tensor): Normalised tensors.
        fresh (callable): ``seed -> untrained model``.
        retrain (callable): ``retrain(images, labels, seed) -> trained model``, the ROAR
                    ``train_fn`` (the preset's recipe from scratch, ``train_seed=seed``).
        pad_value (Tensor): Normalised black, the crop's padding.
    """

    model: nn.Module
    info: Dict[str, Any]
    train: LoadedDataset
    test: LoadedDataset
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    fresh: Callable[[int], nn.Module]
    retrain: Callable[[Tensor, Tensor, int], nn.Module]
    pad_value: Tensor


def prepare_paper(
    root: Union[str, os.PathLike],
    preset: PaperPreset = PAPER,
    *,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    retrain: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    verify: bool = True,
    progress: bool = True,
) -> PaperSetup:
    r"""
    Loads the preset's dataset from ``root`` (offline) and trains its model with its recipe,
    or loads it from the cache (keyed by the recipe and the training data).

    Args:
        root (str or PathLike): The dataset folder, e.g. the folder holding
                    ``cifar-10-batches-py/``.
        preset (PaperPreset, optional): Default: :data:`PAPER`
        cache_dir, retrain: As in :func:`~captum_prune.zoo.training.load_or_train_cifar_model`.
        device (str or torch.device, optional): Train there; None trains on the CPU with one
                    thread. Default: None
        verify (bool, optional): Check the files' checksums, see
                    :func:`~captum_prune.zoo.datasets.load_dataset`. Default: True
        progress (bool, optional): Progress bars. Default: True

    Returns:
        :class:`PaperSetup`.

    Raises:
        FileNotFoundError: If the dataset's files are missing (the message says where to put
                    which).
    """
    train = load_dataset(preset.data, root, "train", verify=verify)
    test = load_dataset(preset.data, root, "test", verify=verify)
    train_images, train_labels = train.tensors(preset.n_train)
    test_images, test_labels = test.tensors(preset.n_test)
    fresh = model_factory(preset.model, len(train.classes), in_channels=train.channels)
    pad_value = -torch.tensor(train.mean) / torch.tensor(train.std)
    model, info = load_or_train_cifar_model(
        fresh, train_images, train_labels, preset.recipe, name=preset.model,
        cache_dir=cache_dir, retrain=retrain, pad_value=pad_value, device=device,
        progress=progress,
    )

    def retrain_fn(images: Tensor, labels: Tensor, seed: int) -> nn.Module:
        recipe = replace(preset.recipe, init_seed=seed, train_seed=seed)
        return train_with_cifar_recipe(fresh(seed), images, labels, recipe,
                                       pad_value=pad_value, device=device,
                                       progress=False)[0]

    return PaperSetup(model, info, train, test, train_images, train_labels, test_images,
                      test_labels, fresh, retrain_fn, pad_value)


@dataclass(frozen=True)
class ScenePreset:
    r"""
    The embedded default redesigned so that methods separate: a large target digit among
    distractor digits of other classes (:func:`~captum_prune.zoo.data.make_digits_scene`),
    the :class:`~captum_prune.zoo.models.DigitsResNet` trained on it, and finer fractions.
    The measured separation is in the docs (Datasets and models).

    Attributes:
        scene (dict): Keyword arguments of :func:`~captum_prune.zoo.data.make_digits_scene`.
        epochs (int): Training epochs of :func:`~captum_prune.zoo.training.train_classifier`.
        max_shift (int): Its translation augmentation.
        lerf_fractions (tuple of float): LeRF / MoRF: 1..10%, then 15, 20, 25, 30%.
        road_fractions (tuple of float): ROAD: 10..90%.
        roar_fractions (tuple of float): ROAR: 1, 2, 5, 10, 20%.
        n_eval (int): Test images of the comparison.
    """

    scene: Dict[str, int] = field(default_factory=lambda: dict(
        canvas_size=48, digit_size=20, distractor_size=12, n_distractors=2))
    epochs: int = 30
    max_shift: int = 0
    lerf_fractions: Tuple[float, ...] = (tuple(round(0.01 * k, 2) for k in range(1, 11))
                                         + (0.15, 0.2, 0.25, 0.3))
    road_fractions: Tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
    roar_fractions: Tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    n_eval: int = 200


#: The redesigned embedded default.
SCENE = ScenePreset()
