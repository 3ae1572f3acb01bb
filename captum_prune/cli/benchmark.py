r"""
``captum-prune benchmark``: the paper's evaluation protocols for many attribution methods.

Runs, over the methods of :mod:`captum_prune.cli.methods`:

- ``sanity``: cascading model-parameter randomisation, block by block from the output;
- ``perturbation``: pixel perturbation, LeRF and MoRF, 1..10% of the pixels (spec §4.2);
- ``roar``: remove the top pixels of every train and test image and retrain from scratch,
  several seeds (spec §4.3). On the embedded data the retrained model is a narrower
  :class:`~captum_prune.zoo.models.DigitsResNet` (widths ``Preset.roar_widths``) trained briefly
  at a higher learning rate, so that the 92 retrainings fit in about 20 minutes on one core
  while still reaching about 90% on unmodified images;
- ``localisation``: positive attribution mass in the ground-truth box, and the pointing game
  (only where boxes exist, i.e. on the embedded digits data);
- ``pathway``: Jaccard overlap of the taylor, integrated-gradients and random pathways of
  :class:`~captum_prune.PrunedGradient`, and the share of dead neurons inside each;
- ``road``: ROAD, MoRF and LeRF with noisy linear imputation
  (:func:`~captum_prune.evaluation.road`);
- ``srg``: symmetric relevance gain, LeRF minus MoRF area on one ordering;
- ``grid_pointing``: the grid pointing game on 2x2 grids of confidently classified test images
  of different classes;
- ``sweep``: PrunedGradient at the paper's sparsities 0/70/80/85/90/95/99% and ``"auto"``: the
  maps (the paper-style figure), the kept-class rate and the relative output change;
- ``linearity``: the first-order error of the pathway (masks fixed) at several sparsities and of
  the full network against the radius of an L2 ball, and the stable radius;
- ``emprt``, ``smprt``: bottom-up randomisation checks (eMPRT's entropy rise, sMPRT's
  Spearman correlation with the fully randomised model), beside the top-down ``sanity``.

Every section also gives a :class:`~captum_prune.cli.results.ProtocolComparison`: per method a
95% bootstrap CI over examples, the paired CI of its difference to PrunedGradient, the tied
share of its ranking and PrunedGradient's verdict (wins / ties / loses, never a winner where the
paired CI contains 0), and the paired CI of every other pair of methods (which pairs separate).
The random-map control (``Random``) is one of the default methods.
``--model-seeds 0,1`` repeats the scored protocols on several trained embedded models and
reports each model's CI and the spread between models; a verdict then needs every model's
paired CI to agree.

Writes ``results.json`` (last, so a complete-looking file means a complete run),
``results.md``, PNG plots and a self-contained ``report.html`` into ``--out``. Everything is
first written into a temporary folder beside ``--out`` and moved into place at the end.
"""
import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from captum_prune._shared import predict
from captum_prune.cli._common import (
    check_output_folder,
    check_seed,
    check_sparsity,
    option_errors,
    parse_choices,
    quiet_captum,
    resolve_device,
    torch_threads,
)
from captum_prune.cli.errors import CommandError
from captum_prune.cli.methods import COMPARISON_SPARSITY
from captum_prune.cli.results import (
    SANITY_PASS_BELOW,
    BenchmarkResults,
    LocalisationResults,
    LocalisationScores,
    PathwayResults,
    PerturbationCurve,
    PerturbationResults,
    RoarCurve,
    RoarResults,
    SanityCurves,
    SanityResults,
    Stat,
)
from captum_prune.evaluation.perturbation import DEFAULT_LERF_FRACTIONS as LERF_FRACTIONS
from captum_prune.evaluation.road import DEFAULT_ROAD_FRACTIONS as ROAD_FRACTIONS
from captum_prune.evaluation.roar import FINE_ROAR_FRACTIONS

# ROAR last: it takes most of the time.
BENCHMARKS = ("sanity", "perturbation", "road", "srg", "grid_pointing", "emprt", "smprt",
              "localisation", "pathway", "sweep", "linearity", "roar")
#: Every file a run may write into --out; those a run does not write are removed from it.
OUTPUT_FILES = ("results.json", "results.md", "report.html", "maps.png", "lerf.png", "morf.png",
                "roar.png", "sanity_spearman_abs.png", "sanity_ssim.png", "localisation.png",
                "road_morf.png", "road_lerf.png", "smprt.png", "scores.png", "sweep_maps.png",
                "sweep_curves.png", "linearity.png")
#: Sparsities of the local-linearity section (the full network is measured too).
LINEARITY_SPARSITIES = (0.7, 0.85, 0.95, 0.99)
LINEARITY_RADII = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
#: The reference of every paired CI.
REFERENCE = "PrunedGradient"
PRESET_NAMES = ("full", "quick", "paper")
#: ``--data`` names of the embedded data: the digit canvases (the default) and the scenes.
EMBEDDED = ("canvas", "scene")


@dataclass(frozen=True)
class Preset:
    r"""Sizes of one benchmark run."""

    #: Test images for sanity, perturbation and localisation; sanity and pathway use fewer.
    n_eval: int
    n_sanity: int
    n_pathway: int
    #: ROAR: train images (maps are needed for each), test images, seeds, training epochs.
    roar_train: int
    roar_test: int
    roar_seeds: Tuple[int, ...]
    roar_epochs: int
    #: ROAR retraining: peak one-cycle learning rate, batch size, and the stage widths of the
    #: retrained DigitsResNet on the embedded data (a user model is retrained as it is).
    roar_lr: float
    roar_batch_size: int
    roar_widths: Tuple[int, ...]
    #: Epochs and train subset of the embedded model (None: the cached default model).
    model_epochs: Optional[int]
    model_train: Optional[int]
    #: "full" or "quick" (a smoke run: its ROAR numbers are marked as not a result).
    name: str = "full"
    #: Grids of the grid pointing game; images of eMPRT and sMPRT; sMPRT's noisy copies.
    n_grids: int = 48
    n_mprt: int = 16
    smprt_samples: int = 5
    #: Test images of the local linearity.
    n_linearity: int = 16
    #: ROAR's removed shares: 1, 2, 5, 10, 20% (the paper's 10..90% are the ``paper``
    #: preset's; on the embedded digits every sharp map brings the retrained model to chance by
    #: 10%, measured, so those cannot rank the methods there).
    roar_fractions: Tuple[float, ...] = FINE_ROAR_FRACTIONS
    #: A preset for a dataset on disk (``paper``): the dataset it needs, its model, methods,
    #: sections and sparsity (None: the command's defaults).
    data: Optional[str] = None
    model: Optional[str] = None
    methods: Optional[Tuple[str, ...]] = None
    benchmarks: Optional[Tuple[str, ...]] = None
    sparsity: Optional[float] = None


PRESETS = {
    # ROAR dominates: two seeds x 5 fractions x 9 methods (+2 shared unmodified runs) = 92
    # trainings on the whole train split (smaller subsets stay near chance). The default
    # width (16, 32, 48) at lr 3e-3 reaches only ~57% in 10 epochs; widths (8, 16, 24) at
    # lr 1e-2, batch 32 reach ~90% in 12 epochs (~8 s each on one core).
    "full": Preset(n_eval=200, n_sanity=24, n_pathway=48, roar_train=1437, roar_test=360,
                   roar_seeds=(0, 1), roar_epochs=12, roar_lr=1e-2, roar_batch_size=32,
                   roar_widths=(8, 16, 24), model_epochs=None, model_train=None,
                   n_grids=48, n_mprt=16, smprt_samples=5),
    # A smoke run of every protocol on the cached default model; its ROAR models are too
    # small to learn the task, so its ROAR numbers are not meaningful.
    "quick": Preset(n_eval=24, n_sanity=6, n_pathway=8, roar_train=160, roar_test=80,
                    roar_seeds=(0, 1), roar_epochs=3, roar_lr=1e-2, roar_batch_size=32,
                    roar_widths=(8, 16, 24), model_epochs=None, model_train=400, name="quick",
                    n_grids=8, n_mprt=6, smprt_samples=3, n_linearity=4),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""Adds the benchmark's options to ``parser``."""
    from captum_prune.cli.methods import METHODS

    parser.add_argument("--out", default="captum-prune-benchmark",
                        help="output folder (default: captum-prune-benchmark)")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced preset that runs in a few minutes (= --preset quick)")
    parser.add_argument("--preset", default=None, choices=PRESET_NAMES,
                        help="full (default), quick, or paper: the paper's CIFAR-10 protocol "
                        "(LeRF 1-10%% on 2000 test images, ROAR 10/30/50/70/90%%, the CIFAR "
                        "ResNet-8 trained with the authors' recipe), for --data cifar10:ROOT")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods, or 'all' (default); from: "
                        f"{', '.join(METHODS)}")
    parser.add_argument("--benchmarks", default=None,
                        help="comma-separated benchmarks (default: all): "
                        f"{', '.join(BENCHMARKS)}")
    parser.add_argument("--sparsity", type=float, default=None,
                        help="share of neurons PrunedGradient prunes, in [0, 1) "
                        f"(default: {COMPARISON_SPARSITY}; the paper preset: 0.85)")
    parser.add_argument("--model", default=None,
                        help="a torchvision architecture name (built with weights=None) or an "
                        "importable module:factory returning an nn.Module (default: the "
                        "embedded digits ResNet)")
    parser.add_argument("--weights", default=None,
                        help="local state-dict file for --model (a file written by "
                        "torch.save(model.state_dict(), PATH))")
    parser.add_argument("--data", default=None,
                        help="NAME:ROOT, a torchvision dataset on disk (never downloaded; NAME "
                        "one of mnist, fashionmnist, kmnist, cifar10, cifar100, svhn; ROOT the "
                        "folder torchvision's class is given), or a local ImageFolder: a folder "
                        "with train/ and val/ (or test/) class folders, or one folder of class "
                        "folders split 80/20; or scene: the embedded digit scenes (a target "
                        "digit among distractors); default: canvas, the embedded "
                        "digits-on-canvas data")
    parser.add_argument("--no-checksum", action="store_true",
                        help="with --data NAME:ROOT, only check that the files exist, not their "
                        "MD5 sums against the official releases (e.g. for a stand-in)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="resize --data images to this square size (default: 224)")
    parser.add_argument("--device", default="cpu",
                        help="torch device, e.g. cpu, cuda or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of image choice and "
                        "randomisation (default: 0)")
    sizes = parser.add_argument_group("sizes (override the preset)")
    sizes.add_argument("--n-eval", type=int, default=None,
                       help="test images for perturbation and localisation")
    sizes.add_argument("--roar-train", type=int, default=None, help="ROAR train images")
    sizes.add_argument("--roar-test", type=int, default=None, help="ROAR test images")
    sizes.add_argument("--roar-seeds", type=int, default=None, help="ROAR seeds per fraction")
    sizes.add_argument("--roar-epochs", type=int, default=None, help="ROAR training epochs")
    sizes.add_argument("--model-epochs", type=int, default=None,
                       help="train the embedded model for this many epochs on the first 400 "
                       "train images instead of using the cached default model (for tests)")
    parser.add_argument("--model-seeds", default="0",
                        help="comma-separated training seeds of the embedded model, e.g. 0,1: "
                        "the scored protocols run on each trained model and the report gives "
                        "each model's CI and the spread between models (default: 0; ROAR and "
                        "the pathway analysis use the first)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is much faster "
                        "on a machine that other programs keep busy")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite results.md, report.html and the plots in "
                        "--out from its results.json (maps.png is kept as it is)")


# --------------------------------------------------------------------------- setup


@dataclass
class Setup:
    r"""A trained model and its data, as tensors."""

    model: nn.Module
    fresh_model: Callable[[int], nn.Module]
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    test_boxes: Optional[Tensor]
    display: Callable[[Tensor], np.ndarray]
    baseline: Optional[float]
    info: Dict[str, Any] = field(default_factory=dict)
    #: ROAR's ``train_fn(images, labels, seed)`` when the data has its own recipe (None: the
    #: embedded data's training with the preset's ROAR settings).
    retrain: Optional[Callable[[Tensor, Tensor, int], nn.Module]] = None



def _embedded_setup(args: argparse.Namespace, preset: Preset, progress: bool,
                    model_seed: int = 0) -> Setup:
    from captum_prune.zoo.data import make_digits_canvas
    from captum_prune.zoo.models import load_weights, model_factory
    from captum_prune.zoo.training import (
        DigitsRecipe,
        evaluate_accuracy,
        load_default_model,
        train_classifier,
    )

    if args.data == "scene":
        return _scene_setup(args, preset, progress, model_seed)
    train, test = make_digits_canvas("train"), make_digits_canvas("test")
    epochs = args.model_epochs if args.model_epochs is not None else preset.model_epochs
    if args.model is None:
        recipe = DigitsRecipe()
        if epochs is not None:
            recipe = DigitsRecipe(epochs=epochs, max_train=preset.model_train)
        if model_seed:
            recipe = replace(recipe, init_seed=model_seed, train_seed=model_seed)
        if args.weights:
            model = recipe.build_model()
            with option_errors("--weights"):
                load_weights(model, args.weights)
            info = {"model": "DigitsResNet", "weights": str(args.weights)}
        else:
            model, info = load_default_model(progress=progress, recipe=recipe)
            info = dict(info, model="DigitsResNet", model_seed=model_seed)

        def fresh(seed: int) -> nn.Module:
            return DigitsRecipe(init_seed=seed, widths=preset.roar_widths).build_model()
    else:
        with option_errors("--model"):
            fresh = model_factory(args.model, num_classes=len(train.classes))
            model = fresh(model_seed)
        if args.weights:
            with option_errors("--weights"):
                load_weights(model, args.weights)
            info = {"model": args.model, "weights": str(args.weights)}
        else:
            # The embedded data trains in minutes, so a user model can be trained here.
            start = time.perf_counter()
            train_classifier(model, train.images, train.labels, epochs=epochs or 30,
                             seed=model_seed, progress=progress)
            info = {"model": args.model, "weights": None, "trained_epochs": epochs or 30,
                    "train_seconds": time.perf_counter() - start, "model_seed": model_seed}
    model.eval()
    info.setdefault("test_accuracy", evaluate_accuracy(model, test.images, test.labels))
    info["data"] = "embedded digits-on-canvas (scikit-learn digits), 32x32 RGB"

    def display(images: Tensor) -> np.ndarray:
        return test.denormalize(images.cpu()).permute(0, 2, 3, 1).numpy()

    return Setup(model, fresh, train.images, train.labels, test.images, test.labels,
                 test.boxes, display, baseline=0.0, info=info)


def _scene_setup(args: argparse.Namespace, preset: Preset, progress: bool,
                 model_seed: int) -> Setup:
    r"""The digit scenes (:data:`captum_prune.zoo.presets.SCENE`: a target digit among
    distractors, 48x48) and their DigitsResNet, trained or loaded from the cache."""
    from captum_prune.zoo.models import load_weights
    from captum_prune.zoo.presets import SCENE, load_scene_model
    from captum_prune.zoo.training import evaluate_accuracy

    if args.model is not None:
        raise CommandError("--data scene runs its own DigitsResNet; --model is not supported "
                           "with it")
    scene = replace(SCENE, init_seed=model_seed, train_seed=model_seed)
    epochs = args.model_epochs if args.model_epochs is not None else preset.model_epochs
    if epochs is not None:
        scene = replace(scene, epochs=epochs)
    train, test = scene.data("train"), scene.data("test")
    if args.weights:
        model = scene.build_model()
        with option_errors("--weights"):
            load_weights(model, args.weights)
        info: Dict[str, Any] = {"weights": str(args.weights)}
    else:
        model, info = load_scene_model(scene, progress=progress)
    model.eval()
    info = dict(info, model="DigitsResNet (scenes)", model_seed=model_seed,
                data="embedded digit scenes: a target digit among 2 distractor digits of "
                     "other classes, 48x48 RGB (zoo.presets.SCENE)")
    info.setdefault("test_accuracy", evaluate_accuracy(model, test.images, test.labels))

    def fresh(seed: int) -> nn.Module:
        from captum_prune.zoo.training import DigitsRecipe

        return DigitsRecipe(init_seed=seed, widths=preset.roar_widths).build_model()

    def display(images: Tensor) -> np.ndarray:
        return test.denormalize(images.cpu()).permute(0, 2, 3, 1).numpy()

    return Setup(model, fresh, train.images, train.labels, test.images, test.labels,
                 test.boxes, display, baseline=0.0, info=info)


def _folder_setup(args: argparse.Namespace, preset: Preset, progress: bool) -> Setup:
    from captum_prune.zoo.data import ImageFolderSplits
    from captum_prune.zoo.models import DigitsResNet, load_weights, model_factory

    if args.image_size < 8:
        raise CommandError(f"--image-size must be at least 8, got {args.image_size}")
    with option_errors("--data"):
        splits = ImageFolderSplits(args.data, args.image_size)
    num_classes = len(splits.classes)
    if args.model is None:
        def fresh(seed: int) -> nn.Module:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return DigitsResNet(num_classes=num_classes)
    else:
        with option_errors("--model"):
            fresh = model_factory(args.model, num_classes)
    if not args.weights:
        raise CommandError(
            "--data needs --weights: a model trained on that data (a state-dict file); only the "
            "embedded default data can be trained here"
        )
    with option_errors("--model"):
        model = fresh(0)
    with option_errors("--weights"):
        load_weights(model, args.weights)
    model.eval()

    train_images, train_labels = splits.tensors("train", preset.roar_train, progress)
    test_images, test_labels = splits.tensors("test", max(preset.n_eval, preset.roar_test),
                                              progress)

    def display(images: Tensor) -> np.ndarray:
        return splits.denormalize(images).permute(0, 2, 3, 1).numpy()

    from captum_prune.zoo.training import evaluate_accuracy

    info = {"model": args.model or "DigitsResNet", "weights": str(args.weights),
            "data": f"ImageFolder {splits.root} ({num_classes} classes, {args.image_size} px)",
            "test_accuracy": evaluate_accuracy(model, test_images, test_labels),
            "test_accuracy_images": len(test_images)}
    return Setup(model, fresh, train_images, train_labels, test_images, test_labels, None,
                 display, baseline=None, info=info)


def _dataset_setup(args: argparse.Namespace, preset: Preset, progress: bool, model_seed: int,
                   spec: Any) -> Setup:
    r"""A torchvision dataset on disk (``--data NAME:ROOT``) and a model: ``--weights``, or
    trained with the authors' CIFAR recipe (cached by recipe and data, like the default model);
    ROAR retrains with the same recipe."""
    from captum_prune.zoo.datasets import load_dataset
    from captum_prune.zoo.models import describe_model, load_weights, model_factory
    from captum_prune.zoo.training import (
        CifarRecipe,
        evaluate_accuracy,
        load_or_train_cifar_model,
        train_with_cifar_recipe,
    )

    try:
        with option_errors("--data"):
            train = load_dataset(spec, split="train", verify=not args.no_checksum)
            test = load_dataset(spec, split="test", verify=not args.no_checksum)
    except FileNotFoundError as error:
        raise CommandError(f"--data {args.data}: {error}") from None
    name = args.model or "resnet8"
    with option_errors("--model"):
        fresh = model_factory(name, len(train.classes), in_channels=train.channels)
    train_images, train_labels = train.tensors(preset.roar_train, progress)
    test_images, test_labels = test.tensors(max(preset.n_eval, preset.roar_test), progress)
    pad_value = -torch.tensor(train.mean) / torch.tensor(train.std)
    recipe = CifarRecipe(init_seed=model_seed, train_seed=model_seed)
    epochs = args.model_epochs if args.model_epochs is not None else preset.model_epochs
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    if args.weights:
        with option_errors("--model"):
            model = fresh(model_seed)
        with option_errors("--weights"):
            load_weights(model, args.weights)
        info: Dict[str, Any] = {"model": name, "weights": str(args.weights)}
    else:
        model, info = load_or_train_cifar_model(
            fresh, train_images, train_labels, recipe, name=name, pad_value=pad_value,
            progress=progress)
        info = dict(info, model=name, weights=None)
    model.eval()
    roar_recipe = replace(recipe, epochs=preset.roar_epochs)

    def retrain(images: Tensor, labels: Tensor, seed: int) -> nn.Module:
        device = images.device
        net = fresh(seed)
        return train_with_cifar_recipe(net, images, labels,
                                       replace(roar_recipe, init_seed=seed, train_seed=seed),
                                       pad_value=pad_value, device=device, progress=False)[0]

    info.update({
        "model_seed": model_seed, "model_description": describe_model(model),
        "data": f"{test.describe()}; normalised with mean {train.mean}, std {train.std}",
        "test_accuracy": evaluate_accuracy(model, test_images, test_labels),
        "test_accuracy_images": len(test_images),
        "roar_recipe": asdict(roar_recipe),
    })

    def display(images: Tensor) -> np.ndarray:
        shown = test.denormalize(images)
        if shown.shape[1] == 1:  # grey images, shown as RGB
            shown = shown.repeat(1, 3, 1, 1)
        return shown.permute(0, 2, 3, 1).numpy()

    # The removal baseline 0 in normalised space is the dataset-mean colour (spec section 4.2).
    return Setup(model, fresh, train_images, train_labels, test_images, test_labels, None,
                 display, baseline=0.0, info=info, retrain=retrain)


# --------------------------------------------------------------------------- benchmarks


def compute_maps(
    factories: Dict[str, Callable], model: nn.Module, images: Tensor, target: Tensor,
    batch_size: int, progress: bool, desc: str,
) -> Tuple[Dict[str, Tensor], Dict[str, float]]:
    r"""Maps of every method for ``images`` (on the CPU) and the seconds per image."""
    from tqdm.auto import tqdm

    maps, seconds = {}, {}
    bar = tqdm(total=len(factories) * len(images), desc=desc, unit="img", disable=not progress)
    for name, factory in factories.items():
        explain = factory(model)
        parts, start = [], time.perf_counter()
        for s in range(0, len(images), batch_size):
            x, t = images[s:s + batch_size], target[s:s + batch_size]
            parts.append(explain(x, t).detach().cpu())
            bar.update(len(x))
        seconds[name] = (time.perf_counter() - start) / len(images)
        maps[name] = torch.cat(parts)
    bar.close()
    return maps, seconds


def sanity_stages(model: nn.Module) -> List[str]:
    r"""
    Randomisation stages from the output to the input: the top-level children that own
    parameters, in reverse, with ``nn.Sequential`` stages split into their blocks (e.g.
    ``fc, layer4.1, layer4.0, ..., bn1, conv1`` for a torchvision ResNet), as the reference
    snapshots after every block.
    """
    stages = []
    for name, child in reversed(list(model.named_children())):
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, nn.Sequential):
            blocks = [(n, c) for n, c in child.named_children()
                      if any(True for _ in c.parameters())]
            stages.extend(f"{name}.{n}" for n, _ in reversed(blocks))
        else:
            stages.append(name)
    return stages or [""]


def run_sanity(setup: Setup, factories: Dict[str, Callable], preset: Preset, seed: int,
               progress: bool, scores: Optional[Dict[str, Dict[str, Any]]] = None
               ) -> SanityResults:
    from tqdm.auto import tqdm

    from captum_prune.evaluation import cascading_randomization

    x = setup.test_images[:preset.n_sanity]
    target = predict(setup.model, x)
    order = sanity_stages(setup.model)
    methods = {}
    for name in tqdm(factories, desc="sanity check", unit="method", disable=not progress):
        result = cascading_randomization(setup.model, factories[name], x, target,
                                         layer_order=order, seed=seed, batch_size=16)
        methods[name] = SanityCurves.from_summary(result.to_dict(), SANITY_PASS_BELOW)
        if scores is not None:
            scores.setdefault("sanity", {})[name] = _sanity_scores(result)
    return SanityResults(["original"] + order, methods, SANITY_PASS_BELOW)


def run_perturbation(setup: Setup, maps: Dict[str, Tensor], images: Tensor, target: Tensor,
                     progress: bool, scores: Optional[Dict[str, Dict[str, Any]]] = None
                     ) -> PerturbationResults:
    from tqdm.auto import tqdm

    from captum_prune.evaluation import pixel_perturbation

    curves: Dict[str, Dict[str, PerturbationCurve]] = {"lerf": {}, "morf": {}}
    jobs = [(mode, name) for mode in ("lerf", "morf") for name in maps]
    for mode, name in tqdm(jobs, desc="pixel perturbation", disable=not progress):
        result = pixel_perturbation(setup.model, images, maps[name], target,
                                    fractions=LERF_FRACTIONS, mode=mode, baseline=setup.baseline)
        curves[mode][name] = PerturbationCurve.from_dict(result.to_dict())
        if scores is not None:
            scores.setdefault(mode, {})[name] = {
                "values": result.per_example_auc, "curve": result.changes.numpy(),
                "tied_share": _mean(result.tied_share)}
    return PerturbationResults(list(LERF_FRACTIONS), curves["lerf"], curves["morf"])


def run_localisation(setup: Setup, maps: Dict[str, Tensor], images: Tensor,
                     boxes: Optional[Tensor],
                     scores: Optional[Dict[str, Dict[str, Any]]] = None) -> LocalisationResults:
    from captum_prune.evaluation import attribution_mass_in_box, boxes_to_masks, pointing_game

    if boxes is None:
        return LocalisationResults(
            skipped="the data has no ground-truth boxes (only the embedded data has)")
    masks = boxes_to_masks(boxes, *images.shape[-2:])
    methods = {}
    for name, a in maps.items():
        mass, hit = attribution_mass_in_box(a, masks), pointing_game(a, masks)
        methods[name] = LocalisationScores.from_dict({"mass_in_box": mass.to_dict(),
                                                      "pointing_game": hit.to_dict()})
        if scores is not None:
            scores.setdefault("mass_in_box", {})[name] = {"values": mass.values.numpy()}
            scores.setdefault("pointing_game", {})[name] = {"values": hit.values.numpy()}
    return LocalisationResults(methods)


def run_roar(setup: Setup, factories: Dict[str, Callable], preset: Preset, batch_size: int,
             progress: bool, scores: Optional[Dict[str, Dict[str, Any]]] = None) -> RoarResults:
    from captum_prune.evaluation import remove_and_retrain
    from captum_prune.zoo.models import describe_model
    from captum_prune.zoo.training import train_classifier

    x_train = setup.train_images[:preset.roar_train]
    y_train = setup.train_labels[:preset.roar_train]
    x_test = setup.test_images[:preset.roar_test]
    y_test = setup.test_labels[:preset.roar_test]
    device = next(iter(setup.model.parameters())).device
    # Maps for the predicted class of the trained model, as the reference does.
    t_train = predict(setup.model, x_train.to(device))
    t_test = predict(setup.model, x_test.to(device))
    unmodified: Dict[int, nn.Module] = {}

    def train_fn(images: Tensor, labels: Tensor, seed: int) -> nn.Module:
        # Fraction 0 is the same data for every method: train it once per seed.
        same = images.shape == x_train.shape and torch.equal(images, x_train)
        if same and seed in unmodified:
            return unmodified[seed]
        if setup.retrain is not None:
            model = setup.retrain(images.to(device), labels.to(device), seed).to(device)
        else:
            model = setup.fresh_model(seed).to(device)
            train_classifier(model, images.to(device), labels.to(device),
                             epochs=preset.roar_epochs, batch_size=preset.roar_batch_size,
                             lr=preset.roar_lr, seed=seed, progress=False)
        if same:
            unmodified[seed] = model
        return model

    methods, seconds = {}, {}
    classes = torch.unique(torch.cat([y_train, y_test])).numel()
    for name, factory in factories.items():
        maps, timing = compute_maps({name: factory}, setup.model,
                                    torch.cat([x_train, x_test]).to(device),
                                    torch.cat([t_train, t_test]), batch_size, progress,
                                    f"ROAR maps {name}")
        a = maps[name]
        result = remove_and_retrain(
            x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device),
            a[:len(x_train)].to(device), a[len(x_train):].to(device), train_fn,
            fractions=preset.roar_fractions, seeds=preset.roar_seeds, baseline=setup.baseline,
            progress=progress,
        )
        methods[name] = RoarCurve.from_dict(result.to_dict())
        seconds[name] = timing[name]
        if scores is not None and result.correct is not None:
            # Per test image: correctness averaged over the training seeds, per fraction,
            # and its area over the fractions (lower is better).
            per_image = np.asarray(result.correct, dtype=np.float64).mean(axis=1).T
            shares = result.tied_share or {}
            scores.setdefault("roar", {})[name] = {
                "values": np.trapezoid(per_image, np.asarray(result.fractions), axis=1),
                "curve": per_image, "tied_share": shares.get("test")}
    return RoarResults(
        fractions=[0.0] + list(preset.roar_fractions), seeds=list(preset.roar_seeds),
        epochs=preset.roar_epochs, n_train=len(x_train), n_test=len(x_test), methods=methods,
        lr=preset.roar_lr, batch_size=preset.roar_batch_size,
        retrained_model=describe_model(setup.fresh_model(0)), map_seconds_per_image=seconds,
        chance=1.0 / classes,
        not_meaningful=RoarResults.judge(methods, 1.0 / classes, smoke_run=preset.name == "quick"),
    )


def run_pathway(setup: Setup, sparsity: float, n: int, progress: bool) -> PathwayResults:
    from tqdm.auto import tqdm

    from captum_prune import PrunedGradient
    from captum_prune.evaluation._explain import mean_std

    x = setup.test_images[:n]
    target = predict(setup.model, x)
    method = PrunedGradient(setup.model)
    pathways = {}
    for criterion in tqdm(("taylor", "integrated_gradients", "random"), desc="pathways",
                          disable=not progress):
        pathways[criterion] = method.pathway(x, target=target, sparsity=sparsity,
                                             criterion=criterion)

    def stat(values: Tensor) -> Stat:
        from captum_prune.evaluation import bootstrap_ci

        array = values.double().cpu().numpy()
        mean, std = mean_std(array)
        ci = bootstrap_ci(array)
        return Stat(float(mean), float(std), _finite(ci.low), _finite(ci.high))

    names = list(pathways)
    return PathwayResults(
        sparsity=sparsity, n_examples=len(x),
        jaccard={f"{a} vs {b}": stat(pathways[a].jaccard(pathways[b]))
                 for i, a in enumerate(names) for b in names[i + 1:]},
        dead_fraction={c: stat(p.dead_fraction()) for c, p in pathways.items()},
        kept_fraction={c: stat(p.kept_fraction) for c, p in pathways.items()},
        target_kept={c: stat((p.pruned_output.argmax(1).cpu() == target.cpu()).double())
                     for c, p in pathways.items()},
    )


def run_sweep(setup: Setup, n: int, progress: bool) -> Tuple[Any, Any]:
    r"""The sparsity sweep; returns ``(SweepResults, the evaluation's result)``."""
    from captum_prune.cli.results import SweepResults
    from captum_prune.evaluation import PAPER_SPARSITIES, sparsity_sweep

    x = setup.test_images[:n].to(next(iter(setup.model.parameters())).device)
    target = predict(setup.model, x)
    result = sparsity_sweep(setup.model, x, target,
                            sparsities=list(PAPER_SPARSITIES) + ["auto"], output_change=0.15,
                            batch_size=16)
    return SweepResults.from_dict(result.to_dict()), result


def run_linearity(setup: Setup, n: int, seed: int) -> Tuple[Any, Any]:
    r"""Local linearity in float64 (so float32 rounding sets no floor); returns
    ``(LinearityResults, the evaluation's result)``."""
    import copy

    from captum_prune.cli.results import LinearityResults
    from captum_prune.evaluation import local_linearity

    model = copy.deepcopy(setup.model).cpu().double().eval()
    x = setup.test_images[:n].cpu().double()
    target = predict(model, x)
    result = local_linearity(model, x, target=target, radii=LINEARITY_RADII,
                             sparsities=LINEARITY_SPARSITIES, n_directions=8, tolerance=0.05,
                             seed=seed, batch_size=128)
    return LinearityResults.from_dict(result.to_dict()), result


# --------------------------------------------------------------------------- scored protocols


def _finite(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None


def _mean(values: Any) -> Optional[float]:
    if values is None:
        return None
    array = np.asarray(values.double().cpu() if isinstance(values, Tensor) else values, float)
    return float(np.nanmean(array)) if array.size and np.isfinite(array).any() else None


def _sanity_scores(result: Any) -> Dict[str, Any]:
    r"""Per example: Spearman |map| with every block randomised, a constant map counted as 0
    when the original map was not constant (as :class:`SanityCurves` does)."""
    final = np.array(result.spearman_abs[-1], dtype=np.float64)
    original_defined = np.isfinite(result.spearman_abs[0])
    final = np.where(np.isnan(final) & original_defined, 0.0, final)
    curve = np.where(np.isnan(result.spearman_abs) & original_defined, 0.0, result.spearman_abs)
    return {"values": final, "curve": curve.T}


def run_road(setup: Setup, maps: Dict[str, Tensor], images: Tensor, target: Tensor,
             seed: int, progress: bool, scores: Dict[str, Dict[str, Any]]) -> None:
    from tqdm.auto import tqdm

    from captum_prune.evaluation import road

    for name in tqdm(maps, desc="ROAD", disable=not progress):
        result = road(setup.model, images, maps[name], target, fractions=ROAD_FRACTIONS,
                      modes=("morf", "lerf"), seed=seed)
        for mode in ("morf", "lerf"):
            scores.setdefault(f"road_{mode}", {})[name] = {
                "values": result.per_example_auc(mode),
                "curve": result.probability[mode].numpy(),
                "tied_share": _mean(result.tied_share)}


def run_srg(setup: Setup, maps: Dict[str, Tensor], images: Tensor, target: Tensor,
            seed: int, progress: bool, scores: Dict[str, Dict[str, Any]]) -> None:
    from tqdm.auto import tqdm

    from captum_prune.evaluation import symmetric_relevance_gain

    for name in tqdm(maps, desc="SRG", disable=not progress):
        result = symmetric_relevance_gain(setup.model, images, maps[name], target,
                                          removal="baseline", baseline=setup.baseline, seed=seed)
        scores.setdefault("srg", {})[name] = {"values": result.values,
                                              "tied_share": _mean(result.tied_share)}


def run_grid_pointing(setup: Setup, factories: Dict[str, Callable], preset: Preset, seed: int,
                      progress: bool, scores: Dict[str, Dict[str, Any]]) -> Optional[str]:
    r"""The grid pointing game on 2x2 grids; returns why it could not run, or None."""
    from tqdm.auto import tqdm

    from captum_prune.evaluation import grid_pointing_game, make_grids

    device = next(iter(setup.model.parameters())).device
    try:
        grids = make_grids(setup.model, setup.test_images.to(device),
                           setup.test_labels.to(device), n_grids=preset.n_grids, n=2,
                           confidence=0.9, seed=seed)
    except ValueError as error:
        return str(error)
    for name in tqdm(factories, desc="grid pointing game", disable=not progress):
        result = grid_pointing_game(grids, factories[name](setup.model))
        scores.setdefault("grid_pointing", {})[name] = {"values": result.per_grid()}
    return None


def run_mprt(setup: Setup, factories: Dict[str, Callable], preset: Preset, which: str,
             seed: int, progress: bool, scores: Dict[str, Dict[str, Any]]) -> List[str]:
    r"""eMPRT or sMPRT (bottom-up) of every method; returns the stages."""
    from tqdm.auto import tqdm

    from captum_prune.evaluation import efficient_mprt, smooth_mprt

    x = setup.test_images[:preset.n_mprt].to(next(iter(setup.model.parameters())).device)
    target = predict(setup.model, x)
    # The blocks of the top-down check, from the input up (a stage per block, not per layer).
    order = list(reversed(sanity_stages(setup.model)))
    stages: List[str] = []
    for name in tqdm(factories, desc=which, unit="method", disable=not progress):
        if which == "emprt":
            result = efficient_mprt(setup.model, factories[name], x, target, seed=seed,
                                    layer_order=order, batch_size=16)
            scores.setdefault("emprt", {})[name] = {"values": result.values}
        else:
            result = smooth_mprt(setup.model, factories[name], x, target, seed=seed,
                                 layer_order=order, n_samples=preset.smprt_samples,
                                 batch_size=16)
            scores.setdefault("smprt", {})[name] = {"values": result.last,
                                                    "curve": result.spearman.T}
        stages = list(result.stages)
    return stages


#: Protocol key -> (title, score, better, x label, curve).
PROTOCOLS = {
    "lerf": ("Pixel perturbation, LeRF", "area under |change of p(class)| / p(class), least "
             "relevant pixels removed first", "lower", "share of pixels removed",
             "|fractional change of p(class)|"),
    "morf": ("Pixel perturbation, MoRF", "the same, most relevant pixels first", "higher",
             "share of pixels removed", "|fractional change of p(class)|"),
    "road_morf": ("ROAD, MoRF", "area under p(class), most relevant pixels imputed first",
                  "lower", "share of pixels imputed", "p(class)"),
    "road_lerf": ("ROAD, LeRF", "area under p(class), least relevant pixels imputed first",
                  "higher", "share of pixels imputed", "p(class)"),
    "srg": ("SRG", "LeRF area minus MoRF area of p(class), one ordering", "higher", "", ""),
    "grid_pointing": ("Grid pointing game", "share of positive mass in the explained cell of a "
                      "2x2 grid", "higher", "", ""),
    "mass_in_box": ("Localisation, mass in box", "share of positive mass in the ground-truth "
                    "box", "higher", "", ""),
    "pointing_game": ("Localisation, pointing game", "hit rate of the map's maximum", "higher",
                      "", ""),
    "sanity": ("Sanity check (cascading, top-down)", "Spearman |map| with every block "
               "randomised", "lower", "randomised up to", "Spearman |map|"),
    "emprt": ("eMPRT (bottom-up)", "relative rise of the map's histogram entropy after "
              "randomising every layer", "higher", "", ""),
    "smprt": ("sMPRT (bottom-up)", "Spearman |smoothed map| with the fully randomised model",
              "lower", "randomised up to", "Spearman |smoothed map|"),
    "roar": ("ROAR", "per test image, area under correctness (mean over seeds) vs share of "
             "pixels removed and retrained", "lower", "share of pixels removed",
             "accuracy after retraining"),
}


def build_comparisons(per_model: List[Dict[str, Dict[str, Any]]], x: Dict[str, List[Any]],
                      not_a_result: Dict[str, Optional[str]], chance: Dict[str, float],
                      seed: int) -> Dict[str, Any]:
    r"""One :class:`ProtocolComparison` per protocol that has scores on every model."""
    from captum_prune.cli.results import ProtocolComparison

    out = {}
    for key, (title, score, better, x_label, curve) in PROTOCOLS.items():
        models = [scores[key] for scores in per_model if key in scores]
        if not models:
            continue
        out[key] = ProtocolComparison.build(
            key, title, score, better, REFERENCE, models, x=x.get(key, ()), x_label=x_label,
            curve_name=curve, not_a_result=not_a_result.get(key), chance=chance.get(key),
            seed=seed)
    return out


# --------------------------------------------------------------------------- command


def paper_preset() -> Preset:
    r"""The ``paper`` preset, from :data:`captum_prune.zoo.presets.PAPER`: the paper's CIFAR-10
    protocol (LeRF 1..10% on 2000 test images, ROAR 10/30/50/70/90% on the whole splits with
    one retraining each, the CIFAR ResNet-8 and its recipe), with the random control added."""
    from captum_prune.cli.methods import CONTROL
    from captum_prune.zoo.presets import PAPER

    if tuple(PAPER.lerf_fractions) != tuple(LERF_FRACTIONS):
        raise RuntimeError("the paper preset's LeRF fractions differ from the benchmark's")
    recipe = PAPER.recipe
    return Preset(n_eval=PAPER.lerf_images, n_sanity=24, n_pathway=48, roar_train=10 ** 9,
                  roar_test=10 ** 9, roar_seeds=tuple(PAPER.roar_seeds),
                  roar_epochs=recipe.epochs, roar_lr=recipe.lr,
                  roar_batch_size=recipe.batch_size, roar_widths=(), model_epochs=None,
                  model_train=None, name="paper", data=PAPER.data, model=PAPER.model,
                  methods=tuple(PAPER.methods) + (CONTROL,),
                  benchmarks=("perturbation", "roar"), sparsity=PAPER.sparsity,
                  roar_fractions=tuple(PAPER.roar_fractions))


def _preset_name(args: argparse.Namespace) -> str:
    name = getattr(args, "preset", None)
    if args.quick and name not in (None, "quick"):
        raise CommandError(f"--quick is --preset quick; it cannot be combined with --preset {name}")
    return "quick" if args.quick else (name or "full")


def _preset(args: argparse.Namespace) -> Preset:
    name = _preset_name(args)
    base = paper_preset() if name == "paper" else PRESETS[name]
    overrides = {}
    for option, attr in (("n_eval", "n_eval"), ("roar_train", "roar_train"),
                         ("roar_test", "roar_test"), ("roar_epochs", "roar_epochs"),
                         ("model_epochs", "model_epochs")):
        value = getattr(args, option)
        if value is not None:
            if value < 1:
                raise CommandError(f"--{option.replace('_', '-')} must be positive, got {value}")
            overrides[attr] = value
    if args.roar_seeds is not None:
        if args.roar_seeds < 1:
            raise CommandError(f"--roar-seeds must be positive, got {args.roar_seeds}")
        overrides["roar_seeds"] = tuple(range(args.roar_seeds))
    preset = replace(base, **overrides)
    if preset.roar_train < 2:
        raise CommandError("--roar-train must be at least 2")
    return replace(preset, n_sanity=min(preset.n_sanity, preset.n_eval),
                   n_pathway=min(preset.n_pathway, preset.n_eval))


def _model_seeds(args: argparse.Namespace, data_spec: Any = None) -> List[int]:
    text = str(getattr(args, "model_seeds", None) or "0")
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--model-seeds: expected comma-separated integers, got {text!r}"
                           ) from None
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise CommandError(f"--model-seeds: expected distinct non-negative integers, got {text!r}")
    if len(seeds) > 1 and (args.weights or (args.data not in (None, "scene", "canvas")
                                            and data_spec is None)):
        raise CommandError("--model-seeds with several seeds trains one model per seed, which "
                           "only the embedded data and --data NAME:ROOT can do (not with "
                           "--weights or an ImageFolder)")
    return seeds


def _data_spec(args: argparse.Namespace, preset: Preset) -> Any:
    r"""The parsed ``--data NAME:ROOT`` (a torchvision dataset on disk), or None for the
    embedded data and an ImageFolder."""
    if args.data in EMBEDDED and not Path(args.data).exists():
        if preset.data:
            raise CommandError(f"--preset {preset.name} needs --data {preset.data}:ROOT, got "
                               f"{args.data}")
        args.data = None if args.data == "canvas" else args.data
        return None
    if args.data is None:
        if preset.data:
            raise CommandError(
                f"--preset {preset.name} runs on {preset.data.upper()}: give the folder that "
                f"holds it, e.g. --data {preset.data}:/data (nothing is downloaded; see the "
                "docs' Datasets page for the layout)")
        return None
    try:
        from captum_prune.zoo.datasets import parse_data_spec
    except ImportError:  # a build without the datasets module: an ImageFolder only
        return None
    with option_errors("--data"):
        spec = parse_data_spec(args.data)
    if spec.name == "imagefolder":
        if preset.data:
            raise CommandError(f"--preset {preset.name} needs --data {preset.data}:ROOT, got "
                               f"the folder {args.data}")
        return None
    if preset.data and spec.name != preset.data:
        raise CommandError(f"--preset {preset.name} needs --data {preset.data}:ROOT, got "
                           f"{spec.name}")
    return spec


def _setup(args: argparse.Namespace, preset: Preset, progress: bool, model_seed: int,
           data_spec: Any = None) -> Setup:
    if data_spec is not None:
        return _dataset_setup(args, preset, progress, model_seed, data_spec)
    if args.data and args.data != "scene":
        return _folder_setup(args, preset, progress)
    return _embedded_setup(args, preset, progress, model_seed)


def _versions() -> Dict[str, str]:
    import captum
    import torchvision

    import captum_prune

    return {"captum_prune": captum_prune.__version__, "captum": captum.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def run(args: argparse.Namespace) -> int:
    r"""Runs the benchmark; returns the exit status."""
    with torch_threads(args.threads), quiet_captum():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from captum_prune.cli import report
    from captum_prune.cli.methods import DEFAULT_METHODS, build_methods, parse_methods

    if getattr(args, "report_only", False):
        return _report_only(Path(args.out))
    started = time.perf_counter()
    preset = _preset(args)
    sparsity = check_sparsity(args.sparsity if args.sparsity is not None
                              else preset.sparsity or COMPARISON_SPARSITY)
    try:
        names = parse_methods(args.methods, default=preset.methods or DEFAULT_METHODS)
    except ValueError as error:
        raise CommandError(str(error).replace("methods:", "--methods:")) from None
    benchmarks = (parse_choices(args.benchmarks, BENCHMARKS, "--benchmarks")
                  if args.benchmarks or not preset.benchmarks
                  else [b for b in BENCHMARKS if b in preset.benchmarks])
    if preset.model and args.model is None:
        args.model = preset.model
    data_spec = _data_spec(args, preset)
    _model_seeds(args, data_spec)
    check_seed(args.seed)
    if args.weights and not Path(args.weights).is_file():
        raise CommandError(f"--weights {args.weights}: no such file")
    if data_spec is None and args.data not in (None, "scene") and not Path(args.data).is_dir():
        raise CommandError(f"--data {args.data}: no such folder")
    device = resolve_device(args.device)
    out = Path(args.out)
    check_output_folder(out, writable_parent=True)
    progress = not args.no_progress

    model_seeds = _model_seeds(args, data_spec)
    setup = _setup(args, preset, progress, model_seeds[0], data_spec)
    setup.model = setup.model.to(device).eval()
    factories = build_methods(names, sparsity=sparsity)
    batch_size = 32

    timings: Dict[str, float] = {}
    n_eval = min(preset.n_eval, len(setup.test_images))
    images = setup.test_images[:n_eval].to(device)
    target = predict(setup.model, images)
    t0 = time.perf_counter()
    maps, seconds = compute_maps(factories, setup.model, images, target, batch_size, progress,
                                 "attribution maps")
    timings["maps"] = time.perf_counter() - t0
    boxes = None if setup.test_boxes is None else setup.test_boxes[:n_eval]
    config = {
        "preset": preset.name, "methods": names, "benchmarks": benchmarks,
        "sparsity": sparsity, "seed": args.seed, "device": str(device),
        "model": args.model, "weights": args.weights, "data": args.data,
        "image_size": args.image_size if args.data else None,
        "model_seeds": model_seeds, "reference": REFERENCE,
        "sizes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(preset).items()},
        "lerf_fractions": list(LERF_FRACTIONS), "roar_fractions": list(preset.roar_fractions),
        "road_fractions": list(ROAD_FRACTIONS),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    results = BenchmarkResults(methods=names, config=config, versions=_versions(),
                               model=setup.info, map_seconds_per_image=seconds)
    per_model: List[Dict[str, Dict[str, Any]]] = []
    x: Dict[str, List[Any]] = {"lerf": list(LERF_FRACTIONS), "morf": list(LERF_FRACTIONS),
                               "road_morf": list(ROAD_FRACTIONS),
                               "road_lerf": list(ROAD_FRACTIONS)}
    not_a_result: Dict[str, Optional[str]] = {}
    chance = {"grid_pointing": 0.25}
    models_info = []
    extra: Dict[str, Any] = {}  # the evaluation results whose figures the run draws
    first_setup = setup
    for k, model_seed in enumerate(model_seeds):
        if k:
            setup = _setup(args, preset, progress, model_seed, data_spec)
            setup.model = setup.model.to(device).eval()
            images = setup.test_images[:n_eval].to(device)
            target = predict(setup.model, images)
            t0 = time.perf_counter()
            maps_k, _ = compute_maps(factories, setup.model, images, target, batch_size,
                                     progress, f"attribution maps, model seed {model_seed}")
            timings["maps"] += time.perf_counter() - t0
        else:
            maps_k = maps
        models_info.append({"model_seed": model_seed,
                            "test_accuracy": setup.info.get("test_accuracy")})
        scores: Dict[str, Dict[str, Any]] = {}
        boxes_k = None if setup.test_boxes is None else setup.test_boxes[:n_eval]
        for bench in benchmarks:
            if k and bench in ("roar", "pathway", "sweep", "linearity"):
                continue  # on the first model only
            t0 = time.perf_counter()
            if bench == "sanity":
                sanity = run_sanity(setup, factories, preset, args.seed, progress, scores)
                x["sanity"] = sanity.stages
                if not k:
                    results.sanity = sanity
            elif bench == "perturbation":
                section = run_perturbation(setup, maps_k, images, target, progress, scores)
                if not k:
                    results.pixel_perturbation = section
            elif bench == "road":
                run_road(setup, maps_k, images, target, args.seed, progress, scores)
            elif bench == "srg":
                run_srg(setup, maps_k, images, target, args.seed, progress, scores)
            elif bench == "grid_pointing":
                why = run_grid_pointing(setup, factories, preset, args.seed, progress, scores)
                if why:
                    not_a_result["grid_pointing"] = why
            elif bench in ("emprt", "smprt"):
                stages = run_mprt(setup, factories, preset, bench, args.seed, progress, scores)
                if bench == "smprt":
                    x["smprt"] = stages
            elif bench == "localisation":
                section = run_localisation(setup, maps_k, images, boxes_k, scores)
                if not k:
                    results.localisation = section
            elif bench == "roar":
                results.roar = run_roar(setup, factories, preset, batch_size, progress, scores)
                x["roar"] = results.roar.fractions
                not_a_result["roar"] = results.roar.not_meaningful
            elif bench == "pathway":
                results.pathway = run_pathway(setup, sparsity, min(preset.n_pathway, n_eval),
                                              progress)
            elif bench == "sweep":
                results.sweep, extra["sweep"] = run_sweep(setup, min(preset.n_pathway, n_eval),
                                                          progress)
            elif bench == "linearity":
                results.linearity, extra["linearity"] = run_linearity(
                    setup, min(preset.n_linearity, n_eval), args.seed)
            timings[bench] = timings.get(bench, 0.0) + time.perf_counter() - t0
        per_model.append(scores)
        if not k:
            first_setup = setup
    skipped = {}
    if "grid_pointing" in not_a_result:
        skipped["grid_pointing"] = not_a_result.pop("grid_pointing")
        for scores in per_model:
            scores.pop("grid_pointing", None)
    results.config["skipped"] = skipped
    images = first_setup.test_images[:n_eval].to(device)
    chance_accuracy = 1.0 / max(2, int(torch.unique(first_setup.test_labels).numel()))
    low = [m for m in models_info if m["test_accuracy"] is not None
           and m["test_accuracy"] < 2 * chance_accuracy]
    if low:
        reason = (f"the model with seed {low[0]['model_seed']} reaches only "
                  f"{low[0]['test_accuracy']:.1%} test accuracy (chance {chance_accuracy:.1%})")
        for key in PROTOCOLS:
            not_a_result[key] = not_a_result.get(key) or reason
    results.model = dict(first_setup.info, models=models_info)
    results.comparisons = build_comparisons(per_model, x, not_a_result, chance, args.seed)
    setup = first_setup

    _write_outputs(out, results, maps, setup, images, boxes, timings, started, extra)
    print(report.summary_text(results))
    print(f"\nwrote {out}/results.json, results.md, report.html and plots "
          f"({results.timings['total_seconds']:.0f} s)")
    return 0


def _pathway_figures(folder: Path, extra: Dict[str, Any], setup: Setup) -> List[Path]:
    r"""The sweep's and the local linearity's figures (drawn from the evaluation results, so
    only by the run itself; ``--report-only`` keeps them)."""
    from captum_prune.cli import report
    from captum_prune.evaluation.plots import (
        linearity_figure,
        sparsity_curves_figure,
        sparsity_maps_figure,
    )

    paths = []
    sweep = extra.get("sweep")
    if sweep is not None:
        n = min(6, len(sweep.target))
        shown = setup.display(setup.test_images[:n])
        fig = sparsity_maps_figure(sweep, shown, examples=range(n),
                                   title="PrunedGradient at the paper's sparsities, and auto "
                                   "(output change at most 15%)")
        paths.append(report.save_figure(fig, folder / "sweep_maps.png"))
        fig = sparsity_curves_figure(sweep, title="kept class and output change vs sparsity "
                                     f"({len(sweep.target)} test images; bands: 95% CI)")
        paths.append(report.save_figure(fig, folder / "sweep_curves.png"))
    linearity = extra.get("linearity")
    if linearity is not None:
        fig = linearity_figure(linearity, title=f"first-order error vs radius, "
                               f"{linearity.error.shape[1]} test images, float64, "
                               f"{linearity.n_directions} directions per radius")
        paths.append(report.save_figure(fig, folder / "linearity.png"))
    return paths


_KEPT_FIGURES = ("maps.png", "sweep_maps.png", "sweep_curves.png", "linearity.png")


def _report_only(out: Path) -> int:
    r"""Rewrites the report of ``out`` from its ``results.json``."""
    import json

    from captum_prune.cli import report

    path = out / "results.json"
    if not path.is_file():
        raise CommandError(f"--report-only: {path} does not exist (run the benchmark first)")
    results = BenchmarkResults.from_dict(json.loads(path.read_text("utf-8")))
    figures = report.write_benchmark_figures(out, results, None, None, None)
    results.figures = sorted({f.name for f in figures} | {
        name for name in _KEPT_FIGURES if name in results.figures and (out / name).is_file()})
    figures = [out / name for name in results.figures]
    report.write_benchmark_markdown(out / "results.md", results)
    report.write_benchmark_html(out / "report.html", results, figures)
    report.write_json(path, results.to_dict())
    print(report.summary_text(results))
    print(f"\nrewrote {out}/results.md, report.html and plots from results.json")
    return 0


def _write_outputs(out: Path, results: BenchmarkResults, maps: Dict[str, Tensor], setup: Setup,
                   images: Tensor, boxes: Optional[Tensor], timings: Dict[str, float],
                   started: float, extra: Optional[Dict[str, Any]] = None) -> None:
    r"""Writes everything into a temporary folder beside ``out``, then moves it into place."""
    from captum_prune.cli import report

    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)  # checked before any work
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        n = min(6, len(images))
        figures = report.write_benchmark_figures(
            staging, results, {k: v[:n] for k, v in maps.items()},
            setup.display(images[:n]), None if boxes is None else boxes[:n],
        )
        figures += _pathway_figures(staging, extra or {}, setup)
        results.figures = [f.name for f in figures]
        results.timings = {**{f"{k}_seconds": v for k, v in timings.items()},
                           "total_seconds": time.perf_counter() - started}
        report.write_benchmark_markdown(staging / "results.md", results)
        report.write_benchmark_html(staging / "report.html", results, figures)
        report.write_json(staging / "results.json", results.to_dict())  # last: marks completion
        out.mkdir(parents=True, exist_ok=True)
        # An older results.json would vouch for the mix of old and new files while moving.
        (out / "results.json").unlink(missing_ok=True)
        # Plots of an earlier run's sections that this run did not write would be stale.
        written = {item.name for item in staging.iterdir()}
        for name in OUTPUT_FILES:
            if name not in written:
                (out / name).unlink(missing_ok=True)
        for item in sorted(staging.iterdir(), key=lambda p: p.name == "results.json"):
            # results.json moves last, so an interrupted move never looks complete.
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
