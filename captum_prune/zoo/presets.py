r"""
Benchmark presets: what to run on which data and model.

- :data:`PAPER`: the pathway-gradient paper's CIFAR-10 protocol (method spec §4.2-4.3), for a
  user with CIFAR-10 on disk: the CIFAR ResNet-8 trained with the authors' recipe
  (:class:`~captum_prune.zoo.training.CifarRecipe`), LeRF at 1..10% of the pixels and ROAR at
  10/30/50/70/90%, retraining with the same recipe. :func:`prepare_paper` loads the data,
  trains (or loads from the cache) the model and returns what the protocols need.
- :data:`SCENE`: the embedded default redesigned so that methods separate: digits among
  distractor digits (:func:`~captum_prune.zoo.data.make_digits_scene`) and finer fractions;
  :func:`load_scene_model` trains (or loads from the cache) its model.

Presets are plain data; the protocols themselves are in :mod:`captum_prune.evaluation`.
"""
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from captum_prune.evaluation.roar import FINE_ROAR_FRACTIONS
from captum_prune.zoo.data import DigitsSceneData, make_digits_scene
from captum_prune.zoo.datasets import LoadedDataset, load_dataset
from captum_prune.zoo.models import DigitsResNet, build_digits_model, model_factory
from captum_prune.zoo.training import (
    CifarRecipe,
    cached_training,
    evaluate_accuracy,
    load_or_train_cifar_model,
    train_classifier,
    train_with_cifar_recipe,
)

__all__ = ["PaperPreset", "PAPER", "PaperSetup", "prepare_paper", "ScenePreset", "SCENE",
           "load_scene_model"]

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
        train (LoadedDataset): The train split.
        test (LoadedDataset): The test split.
        train_images (Tensor): Normalised train images (the first ``n_train``).
        train_labels (Tensor): Their labels.
        test_images (Tensor): Normalised test images (the first ``n_test``).
        test_labels (Tensor): Their labels.
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
    the :class:`~captum_prune.zoo.models.DigitsResNet` trained on it with
    :func:`~captum_prune.zoo.training.train_classifier`, and finer fractions. The measured
    separation of the methods is in the docs (Datasets, models and presets).

    Attributes:
        canvas_size, digit_size, distractor_size, n_distractors, channels, data_seed (int):
                    Arguments of :func:`~captum_prune.zoo.data.make_digits_scene`.
        widths (tuple of int): Stage widths of the model.
        init_seed, train_seed (int): Seeds of the initialisation and of the training.
        epochs, batch_size, lr, weight_decay, max_shift: Passed to
                    :func:`~captum_prune.zoo.training.train_classifier`.
        lerf_fractions (tuple of float): LeRF / MoRF: 1..10%, then 15, 20, 25, 30%.
        road_fractions (tuple of float): ROAD: 10..90%.
        roar_fractions (tuple of float): ROAR: 1, 2, 5, 10, 20%.
        n_eval (int): Test images of the comparison.
    """

    canvas_size: int = 48
    digit_size: int = 20
    distractor_size: int = 12
    n_distractors: int = 2
    channels: int = 3
    data_seed: int = 0
    widths: Tuple[int, ...] = (16, 32, 48)
    init_seed: int = 0
    train_seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 0
    lerf_fractions: Tuple[float, ...] = (tuple(round(0.01 * k, 2) for k in range(1, 11))
                                         + (0.15, 0.2, 0.25, 0.3))
    road_fractions: Tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
    roar_fractions: Tuple[float, ...] = FINE_ROAR_FRACTIONS
    n_eval: int = 200

    def data(self, split: str) -> DigitsSceneData:
        r"""The ``"train"`` or ``"test"`` scenes of this preset."""
        return make_digits_scene(split, seed=self.data_seed, canvas_size=self.canvas_size,
                                 digit_size=self.digit_size,
                                 distractor_size=self.distractor_size,
                                 n_distractors=self.n_distractors, channels=self.channels)

    def build_model(self, seed: Optional[int] = None) -> DigitsResNet:
        r"""A fresh model (seed: ``init_seed`` unless given)."""
        return build_digits_model(self.channels, seed=self.init_seed if seed is None else seed,
                                  widths=self.widths)

    def key(self) -> str:
        r"""A short hash of the fields that determine the model (not the fractions)."""
        fields = {k: v for k, v in asdict(self).items()
                  if not k.endswith("_fractions") and k != "n_eval"}
        fields["widths"] = list(fields["widths"])
        fields["version"] = _SCENE_VERSION
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# Bump when make_digits_scene or the scene training changes in a way the fields miss.
_SCENE_VERSION = 1

#: The redesigned embedded default.
SCENE = ScenePreset()


def load_scene_model(
    preset: ScenePreset = SCENE,
    *,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    retrain: bool = False,
    progress: bool = True,
) -> Tuple[DigitsResNet, Dict[str, Any]]:
    r"""
    The model of the redesigned embedded default, trained on ``preset.data("train")`` (about
    two to four minutes on one CPU core) or loaded from the cache, where it is stored like the
    default digits model (:func:`~captum_prune.zoo.training.load_default_model`) as
    ``digits_scene_{key}.pt``.

    Returns:
        tuple: ``(model, info)``: the model on the CPU in eval mode, and ``key``, ``path``,
        ``preset``, ``train_accuracy``, ``test_accuracy``, ``train_seconds``, ``from_cache``.
    """
    if not isinstance(preset, ScenePreset):
        raise TypeError(f"preset must be a ScenePreset, got {type(preset).__name__}")

    def train(model: nn.Module) -> Dict[str, Any]:
        data, test = preset.data("train"), preset.data("test")
        start = time.perf_counter()
        train_classifier(model, data.images, data.labels, epochs=preset.epochs,
                         batch_size=preset.batch_size, lr=preset.lr,
                         weight_decay=preset.weight_decay, max_shift=preset.max_shift,
                         seed=preset.train_seed, progress=progress)
        seconds = time.perf_counter() - start
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(preset).items()}
        return {"key": preset.key(), "preset": fields, "train_seconds": seconds,
                "train_accuracy": evaluate_accuracy(model, data.images, data.labels),
                "test_accuracy": evaluate_accuracy(model, test.images, test.labels)}

    return cached_training(f"digits_scene_{preset.key()}.pt", preset.build_model, train,
                           cache_dir=cache_dir, retrain=retrain)
