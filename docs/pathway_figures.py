r"""Measures the figures and numbers of docs/pathway.rst on the embedded digits model.

Run from the repository root (about 5 minutes on one core; trains and caches the digits model
first if it is not cached)::

    python docs/pathway_figures.py --out docs/_static/pathway

Writes ``linearity.png``, ``sweep_maps.png``, ``sweep_curves.png`` and ``numbers.json`` (the
linearity curves, the sweep's kept-class rates and output changes, and the cost of
``sweep`` and ``"auto"`` measured in this process on one thread, alternating).
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's captum_prune

import torch  # noqa: E402

RADII = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
LINEARITY_SPARSITIES = (0.7, 0.85, 0.9, 0.95, 0.99)


def _median_time(calls, repeats):
    """Median seconds of each of ``calls``, run alternately ``repeats`` times after a
    warm-up."""
    for call in calls:
        call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/_static/pathway")
    parser.add_argument("--n", type=int, default=32, help="test images")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from captum_prune import PrunedGradient
    from captum_prune.evaluation import PAPER_SPARSITIES, local_linearity, sparsity_sweep
    from captum_prune.evaluation.plots import (
        linearity_figure,
        sparsity_curves_figure,
        sparsity_maps_figure,
    )
    from captum_prune.zoo.data import make_digits_canvas
    from captum_prune.zoo.training import load_default_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, info = load_default_model(progress=False)
    data = make_digits_canvas("test")
    x = data.images[: args.n]
    with torch.no_grad():
        target = model(x).argmax(1)
    numbers = {"model": {"key": info["key"], "test_accuracy": info["test_accuracy"]},
               "n_examples": int(x.shape[0]), "threads": torch.get_num_threads()}

    # Local linearity, in float64 so that float32 rounding does not set a floor.
    start = time.perf_counter()
    model64 = copy.deepcopy(model).double()
    linearity = local_linearity(model64, x.double(), target=target, radii=RADII,
                                sparsities=LINEARITY_SPARSITIES, n_directions=8,
                                tolerance=0.05, seed=0)
    numbers["linearity"] = linearity.to_dict()
    numbers["linearity"]["seconds"] = time.perf_counter() - start
    linearity_figure(linearity, title="DigitsResNet, 32 test images, float64, 8 directions "
                     "per radius").savefig(out / "linearity.png", dpi=110)

    # The paper's sweep, and "auto".
    start = time.perf_counter()
    sweep = sparsity_sweep(model, x, target, sparsities=list(PAPER_SPARSITIES) + ["auto"],
                           output_change=0.15)
    numbers["sweep"] = sweep.to_dict()
    numbers["sweep"]["seconds"] = time.perf_counter() - start
    numbers["sweep"]["auto_bound_held"] = bool(
        (sweep.change[:, -1].nan_to_num(0.0) <= 0.15).all())
    images = data.denormalize(x).permute(0, 2, 3, 1).numpy()
    sparsity_maps_figure(sweep, images, examples=range(6),
                         title="PrunedGradient at the paper's sparsities, and auto "
                         "(output_change 0.15)").savefig(out / "sweep_maps.png", dpi=110)
    sparsity_curves_figure(sweep, title="kept class and output change vs sparsity "
                           "(32 test images)").savefig(out / "sweep_curves.png", dpi=110)

    # Cost, one thread, alternating in this process.
    pg = PrunedGradient(model)
    batch, t = x[:8], target[:8]
    sparsities = list(PAPER_SPARSITIES)
    separate, swept, plain, auto = _median_time([
        lambda: [pg.attribute(batch, target=t, sparsity=s) for s in sparsities],
        lambda: pg.sweep(batch, target=t, sparsities=sparsities),
        lambda: pg.attribute(batch, target=t, sparsity=0.85),
        lambda: pg.attribute(batch, target=t, sparsity="auto", output_change=0.15),
    ], args.repeats)
    numbers["cost"] = {
        "batch": int(batch.shape[0]), "repeats": args.repeats, "sparsities": sparsities,
        "separate_calls_s": separate, "sweep_s": swept, "sweep_over_separate": swept / separate,
        "plain_call_s": plain, "auto_s": auto, "auto_over_plain": auto / plain,
    }
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2) + "\n")
    print(json.dumps(numbers["cost"], indent=2))


if __name__ == "__main__":
    main()
