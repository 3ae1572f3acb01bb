r"""
``captum-prune attribute``: the maps of a whole dataset, into a map store.

Attributes every image of the embedded digits data (or of a local ImageFolder, the same
``--data`` forms as ``captum-prune benchmark``) with one method of the benchmark's registry,
and writes a :class:`~captum_prune.MapStore`. Run it under ``torchrun`` to share the work
between processes (``torchrun --nproc-per-node=N -m captum_prune attribute ...``); run it
again after an interruption to complete the store. It prints the throughput in images/s.
"""
import argparse
import os
import warnings
from pathlib import Path
from typing import Any, Tuple

import torch
from torch import nn

from captum_prune.cli._common import (
    check_sparsity,
    option_errors,
    parse_sparsity,
    resolve_device,
    torch_threads,
)
from captum_prune.cli.errors import CommandError

DEFAULT_BATCH_SIZE = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""Adds the options of ``captum-prune attribute`` to ``parser``."""
    from captum_prune.cli.methods import METHODS

    parser.add_argument("--method", required=True,
                        help=f"the attribution method, one of: {', '.join(METHODS)}")
    parser.add_argument("--out", required=True,
                        help="the map store's folder (created, or resumed if it holds a store of "
                        "the same method, model and settings)")
    parser.add_argument("--data", default=None,
                        help="a local ImageFolder: a folder with train/ and val/ (or test/) class "
                        "folders, or one folder of class folders (default: the embedded "
                        "digits-on-canvas data)")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="which split to attribute: the embedded train or test split, or "
                        "--data's train/ or val/ (test/) folder (default: train)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="resize --data images to this square size (default: 224)")
    parser.add_argument("--model", default=None,
                        help="a torchvision architecture name or an importable module:factory "
                        "(default: the embedded digits ResNet); needs --weights")
    parser.add_argument("--weights", default=None,
                        help="local state-dict file of the model (default for the embedded model: "
                        "the cached default model, trained on first use)")
    parser.add_argument("--sparsity", type=parse_sparsity, default=None,
                        help="share of neurons PrunedGradient prunes, in [0, 1), or 'auto' "
                        "(per example, within a 15%% output change) (default: 0.8)")
    parser.add_argument("--target", default="predicted",
                        help="'predicted' (the model's class), 'label' (the dataset's) or a "
                        "class number (default: predicted)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per attribution call (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--shard-size", type=int, default=None,
                        help="maps per shard file, the unit of resumption and of the split "
                        "between processes (default: a multiple of --batch-size near 256)")
    parser.add_argument("--float16", action="store_true", help="store the maps as float16")
    parser.add_argument("--limit", type=int, default=None,
                        help="attribute only the first N images of the split")
    parser.add_argument("--seed", type=int, default=0, help="seed of random methods (default: 0)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda or auto; under torchrun, CUDA process k uses GPU "
                        "LOCAL_RANK (default: cpu)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader worker processes per process (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch per process (default: 1; 0 leaves torch's "
                        "choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    r"""Runs ``captum-prune attribute``; returns the exit status."""
    try:
        with torch_threads(args.threads):
            return _run(args)
    except CommandError as error:  # one line, also for the shared helpers' longer messages
        raise CommandError(" ".join(str(error).split())) from None


def _check(args: argparse.Namespace) -> None:
    for option, value, least in (("--batch-size", args.batch_size, 1),
                                 ("--shard-size", args.shard_size, 1),
                                 ("--limit", args.limit, 1), ("--seed", args.seed, 0),
                                 ("--num-workers", args.num_workers, 0),
                                 ("--image-size", args.image_size, 8)):
        if value is not None and value < least:
            raise CommandError(f"{option} must be at least {least}, got {value}")
    if args.weights and not Path(args.weights).is_file():
        raise CommandError(f"--weights {args.weights}: no such file")
    if args.data and not Path(args.data).is_dir():
        raise CommandError(f"--data {args.data}: no such folder")
    if args.model and not args.weights:
        raise CommandError(f"--model {args.model} needs --weights: the maps of an untrained "
                           "model are rarely what you want (save its state dict to pass it)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder")


def _target(text: str) -> Any:
    if text in ("predicted", "label"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise CommandError(
            f"--target must be 'predicted', 'label' or a class number, got {text!r}"
        ) from None
    if value < 0:
        raise CommandError(f"--target must be a non-negative class number, got {value}")
    return value


def _user_model(spec: str, num_classes: int) -> nn.Module:
    from captum_prune.zoo.models import model_factory

    with option_errors("--model"):
        return model_factory(spec, num_classes=num_classes)(0)


def _weights(model: nn.Module, path: str) -> None:
    from captum_prune.zoo.models import load_weights

    with option_errors("--weights"):
        load_weights(model, path)


def _device(name: str) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _embedded(args: argparse.Namespace, progress: bool) -> Tuple[Any, nn.Module, str]:
    from captum_prune.zoo.data import make_digits_canvas
    from captum_prune.zoo.training import DigitsRecipe, load_default_model

    dataset = make_digits_canvas(args.split)
    if args.model:
        model = _user_model(args.model, len(dataset.classes))
        _weights(model, args.weights)
    elif args.weights:
        model = DigitsRecipe().build_model()
        _weights(model, args.weights)
    else:
        model, _ = load_default_model(progress=progress)
    return dataset, model, f"embedded digits, {args.split} split"


def _folder(args: argparse.Namespace) -> Tuple[Any, nn.Module, str]:
    import torchvision
    from torchvision import transforms

    from captum_prune.zoo.data import IMAGENET_MEAN, IMAGENET_STD

    root = Path(args.data)
    sub = {"train": ["train"], "test": ["val", "test"]}[args.split]
    found = next((root / n for n in sub if (root / n).is_dir()), None)
    if found is None and (root / "train").is_dir():
        raise CommandError(f"--data {root}: no {' or '.join(sub)}/ folder for --split {args.split}")
    if found is None and args.split == "test":
        raise CommandError(f"--data {root} has no val/ or test/ folder; leave --split at train "
                           "to attribute the whole folder")
    folder = found or root
    transform = transforms.Compose([
        transforms.Resize((args.image_size, args.image_size)),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    try:
        dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise CommandError(f"--data {folder}: not an ImageFolder ({error})") from None
    if not args.weights:
        raise CommandError("--data needs --weights: a model trained on that data (a state-dict "
                           "file)")
    if args.model:
        model = _user_model(args.model, len(dataset.classes))
    else:
        from captum_prune.zoo.models import DigitsResNet

        model = DigitsResNet(num_classes=len(dataset.classes))
    _weights(model, args.weights)
    return dataset, model, f"ImageFolder {folder}, {args.image_size} px"


def _run(args: argparse.Namespace) -> int:
    from captum_prune.cli.methods import METHODS, build_methods, parse_methods
    from captum_prune.maps import attribute_dataset

    _check(args)
    try:
        names = parse_methods(args.method, default=[])
    except ValueError as error:
        raise CommandError(str(error).replace("methods:", "--method:")) from None
    if len(names) != 1:
        raise CommandError(f"--method takes one method, got {args.method!r}")
    name = names[0]
    from captum_prune.cli.methods import COMPARISON_SPARSITY as DEFAULT_SPARSITY

    sparsity = check_sparsity(DEFAULT_SPARSITY if args.sparsity is None else args.sparsity)
    target = _target(args.target)
    device = _device(args.device)
    rank = int(os.environ.get("RANK", "0") or 0)
    progress = not args.no_progress and rank == 0
    warnings.filterwarnings("ignore", module=r"captum\..*")
    warnings.filterwarnings("ignore", message=r".*(backward hook|inplace|detach|requires_grad).*")

    dataset, model, data_text = (_folder(args) if args.data else _embedded(args, progress))
    classes = len(getattr(dataset, "classes", ()) or ())
    if isinstance(target, int) and classes and target >= classes:
        raise CommandError(f"--target {target}: the data has {classes} classes (0..{classes - 1})")
    model = model.to(device).eval()
    explain = build_methods([name], sparsity=sparsity)[name](model)
    label = f"{name}: {METHODS[name].description}"
    if name.startswith("PrunedGradient"):
        label += f", sparsity {sparsity if sparsity == 'auto' else format(sparsity, 'g')}"
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    try:
        store = attribute_dataset(
            explain, dataset, args.out, batch_size=args.batch_size, shard_size=args.shard_size,
            target=target, indices=None if n == len(dataset) else range(n),
            dtype=torch.float16 if args.float16 else None, model=model, method_name=label,
            seed=args.seed, num_workers=args.num_workers, progress=progress,
        )
    except ValueError as error:
        raise CommandError(str(error).replace("out: ", "--out: ", 1)) from None
    if rank == 0:
        info = store.run_info
        speed = info["images_per_second"]
        rate = f"{speed:.1f} images/s" if speed else "nothing left to compute"
        print(f"{args.out}: {len(store)} maps of {name} ({data_text}), "
              f"{len(store.shards)} shard(s); computed {info['computed']}, skipped "
              f"{info['skipped']}; {rate} with {info['world_size']} process(es), "
              f"{torch.get_num_threads()} thread(s) each, in {info['seconds']:.1f} s")
    return 0
