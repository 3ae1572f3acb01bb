r"""
``captum-prune demo``: PrunedGradient next to Captum's baselines on the embedded digits model.

Trains (about a minute on one CPU thread, then cached) or loads the default
:class:`~captum_prune.zoo.models.DigitsResNet`, explains a few test images with every method,
writes a comparison figure and prints localisation scores and time per image.
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor

from captum_prune.cli._common import (
    check_output_folder,
    check_seed,
    check_sparsity,
    quiet_captum,
    resolve_device,
    torch_threads,
)
from captum_prune.cli.errors import CommandError
from captum_prune.cli.methods import COMPARISON_SPARSITY

DEFAULT_OUT = "captum-prune-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""Adds the demo's options to ``parser``."""
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--sparsity", type=float, default=COMPARISON_SPARSITY,
                        help="share of neurons PrunedGradient prunes, in [0, 1) "
                        f"(default: {COMPARISON_SPARSITY})")
    parser.add_argument("--n-images", type=int, default=6,
                        help="test images to explain (default: 6)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: PrunedGradient, Saliency, "
                        "IntegratedGradients, SmoothGrad, GuidedBackprop, GradCAM; 'all' for "
                        "every method of the benchmark)")
    parser.add_argument("--device", default="cpu",
                        help="torch device, e.g. cpu, cuda, cuda:1 or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed that picks the test images and SmoothGrad's noise "
                        "(default: 0)")
    # The digits model is tiny: one thread loses little on an idle machine, and on a busy one
    # OpenMP threads waiting on each other made training tens of times slower.
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default: 1, best for the small digits "
                        "model; 0 leaves torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _pick_images(labels: Tensor, predicted: Tensor, n: int, seed: int) -> Tensor:
    r"""``n`` correctly classified test images of different classes where possible."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    order = order[(predicted[order] == labels[order])]
    chosen: List[int] = []
    seen = set()
    for i in order.tolist():  # first one image per class, then any
        if int(labels[i]) not in seen:
            chosen.append(i)
            seen.add(int(labels[i]))
        if len(chosen) == n:
            break
    for i in order.tolist():
        if len(chosen) == n:
            break
        if i not in chosen:
            chosen.append(i)
    return torch.tensor(sorted(chosen))


def run(args: argparse.Namespace) -> int:
    r"""Runs the demo; returns the exit status. The caller's random state is restored."""
    with torch_threads(args.threads), quiet_captum(), torch.random.fork_rng(devices=[]):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from captum_prune._shared import atomic_write, predict
    from captum_prune.cli.methods import DEMO_METHODS, build_methods, parse_methods
    from captum_prune.cli.report import map_grid_figure, markdown_table, save_figure
    from captum_prune.evaluation import attribution_mass_in_box, boxes_to_masks, pointing_game
    from captum_prune.zoo import training
    from captum_prune.zoo.data import make_digits_canvas

    sparsity = check_sparsity(args.sparsity)
    if args.n_images < 1 or args.n_images > 32:
        raise CommandError(f"--n-images must be between 1 and 32, got {args.n_images}")
    check_seed(args.seed)
    try:
        names = parse_methods(args.methods, default=DEMO_METHODS)
    except ValueError as error:
        raise CommandError(str(error).replace("methods:", "--methods:")) from None
    device = resolve_device(args.device)
    out = Path(args.out)
    check_output_folder(out)
    progress = not args.no_progress

    start = time.perf_counter()
    model, info = training.load_default_model(progress=progress)
    model = model.to(device).eval()
    test = make_digits_canvas("test")
    predicted = predict(model, test.images, device=device).cpu()
    idx = _pick_images(test.labels, predicted, args.n_images, args.seed)
    x = test.images[idx].to(device)
    target = test.labels[idx].to(device)
    box_masks = boxes_to_masks(test.boxes[idx], *x.shape[-2:])

    maps: Dict[str, Tensor] = {}
    rows = []
    factories = build_methods(names, sparsity=sparsity)
    for name in tqdm(names, desc="attributions", unit="method", disable=not progress):
        # Seeded per method (SmoothGrad's noise), so every run draws the same figure.
        torch.manual_seed(args.seed)
        explain = factories[name](model)
        explain(x[:1], target[:1])  # warm-up, so the timing leaves out one-off setup
        t0 = time.perf_counter()
        a = explain(x, target).detach().cpu()
        seconds = (time.perf_counter() - t0) / len(x)
        maps[name] = a
        rows.append([
            name,
            attribution_mass_in_box(a, box_masks).mean,
            pointing_game(a, box_masks).mean,
            f"{seconds * 1000:.1f}",
        ])

    out.mkdir(parents=True, exist_ok=True)
    display = test.denormalize(test.images[idx]).permute(0, 2, 3, 1).numpy()
    labels = [f"digit {int(test.labels[i])}" for i in idx]
    notes = {row[0]: f"in box {row[1]:.2f}" for row in rows}
    title = (f"|attribution|, max over channels; dashed box: ground truth; "
             f"PrunedGradient sparsity {sparsity:g}")
    fig = map_grid_figure(display, maps, test.boxes[idx], labels, notes, title=title)
    figure_path = save_figure(fig, out / "demo.png")

    headers = ["method", "mass in box", "pointing game", "ms / image"]
    table = markdown_table(headers, rows)
    where = "cache" if info.get("from_cache") else f"trained in {info['train_seconds']:.0f} s"
    header = (
        f"Digits model ({where}; test accuracy {info['test_accuracy']:.3f}), "
        f"{len(idx)} test images, device {device}.\n\n"
    )
    atomic_write(out / "demo.md", header + table)
    print(header + table, end="")
    print(f"\nfigure: {figure_path}\ntotal time: {time.perf_counter() - start:.1f} s")
    sys.stdout.flush()
    return 0
