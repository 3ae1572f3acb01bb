"""Do attribution methods separate on the embedded data? Trains a model, compares the methods.

    python docs/separation.py --data scene --n-eval 200 --out separation.json

Trains a DigitsResNet on the embedded digits (``canvas``: :func:`make_digits_canvas`;
``scene``: :func:`make_digits_scene`, the redesigned default; its defaults are
``captum_prune.zoo.presets.SCENE``'s, and ``--seed 0`` trains SCENE's model) with one torch
thread, computes
the maps of the random control, Saliency, SmoothGrad, InputXGradient, GuidedBackprop,
IntegratedGradients and PrunedGradient (sparsity 0.8 and the method's default 0.85) on the
first ``--n-eval`` test images, and prints :func:`compare_methods`'s tables (paired bootstrap
CIs against PrunedGradient at 0.8) and, per protocol, whether the random control, Saliency,
SmoothGrad and PrunedGradient are all separated from each other.
"""
import argparse
import json
import time

import torch

from captum_prune.cli.methods import build_methods
from captum_prune.evaluation import RandomAttribution, compare_methods
from captum_prune.zoo.data import make_digits_canvas, make_digits_scene
from captum_prune.zoo.models import build_digits_model
from captum_prune.zoo.presets import SCENE
from captum_prune.zoo.training import evaluate_accuracy, train_classifier

KEY = ("random", "Saliency", "SmoothGrad", "PrunedGradient")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("canvas", "scene"), default="scene")
    parser.add_argument("--canvas-size", type=int, default=None)
    parser.add_argument("--digit-size", type=int, default=None)
    parser.add_argument("--distractor-size", type=int, default=SCENE.distractor_size)
    parser.add_argument("--distractors", type=int, default=SCENE.n_distractors)
    parser.add_argument("--epochs", type=int, default=SCENE.epochs)
    parser.add_argument("--max-shift", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and training")
    parser.add_argument("--target", choices=("predicted", "label"), default="predicted")
    parser.add_argument("--n-eval", type=int, default=SCENE.n_eval)
    parser.add_argument("--protocols", default="lerf,morf,road_morf,road_lerf,srg")
    parser.add_argument("--lerf-max", type=float, default=0.10,
                        help="largest LeRF/MoRF fraction (steps of 1%% up to 10%%, then 5%%)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.data == "canvas":
        kw = dict(canvas_size=args.canvas_size or 32, digit_size=args.digit_size or 16)
        train, test = make_digits_canvas("train", **kw), make_digits_canvas("test", **kw)
    else:
        kw = dict(canvas_size=args.canvas_size or SCENE.canvas_size,
                  digit_size=args.digit_size or SCENE.digit_size,
                  distractor_size=args.distractor_size, n_distractors=args.distractors)
        train, test = make_digits_scene("train", **kw), make_digits_scene("test", **kw)
    start = time.perf_counter()
    model = train_classifier(build_digits_model(seed=args.seed), train.images, train.labels,
                             epochs=args.epochs, max_shift=args.max_shift, seed=args.seed,
                             progress=False)
    train_s = time.perf_counter() - start
    acc = evaluate_accuracy(model, test.images, test.labels)
    print(f"data {args.data} {kw}; trained {args.epochs} epochs in {train_s:.0f} s; "
          f"test accuracy {acc:.3f}", flush=True)

    factories = build_methods(["PrunedGradient", "Saliency", "SmoothGrad", "InputXGradient",
                               "GuidedBackprop", "IntegratedGradients"], sparsity=0.8)
    methods = {name: f(model) for name, f in factories.items()}
    methods["PrunedGradient@0.85"] = build_methods(["PrunedGradient"], sparsity=0.85)[
        "PrunedGradient"](model)
    methods["random"] = RandomAttribution(model, seed=0)
    x = test.images[: args.n_eval]
    steps = [round(0.01 * k, 2) for k in range(1, 11)]
    while steps[-1] < args.lerf_max - 1e-9:
        steps.append(round(steps[-1] + 0.05, 2))
    protocols = args.protocols.split(",")
    start = time.perf_counter()
    result = compare_methods(model, x, methods, protocols, reference="PrunedGradient",
                             target=None if args.target == "predicted"
                             else test.labels[: args.n_eval], baseline=0.0,
                             fractions={"lerf": steps, "morf": steps})
    print(f"protocols in {time.perf_counter() - start:.0f} s", flush=True)
    print(result.table())
    for p in protocols:
        c = result[p]
        print(f"\n{p}: {'/'.join(KEY)} all separated: {c.all_separated(KEY)}\n")
        print(c.pairwise_table(KEY))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "data_kwargs": kw, "test_accuracy": acc,
                       "train_seconds": train_s, **result.to_dict(per_example=True)},
                      handle, indent=1)


if __name__ == "__main__":
    main()
