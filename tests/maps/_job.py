r"""The attribution job that the tests run in-process, as a subprocess and under torchrun.

``python tests/maps/_job.py OUT [--method NAME] [--sparsity S]`` writes the map store of
:func:`dataset` with :func:`model` (both seeded, so every process builds the same ones).
"""
import argparse
import os
import sys

import torch
from torch import nn

N_ITEMS = 45
BATCH_SIZE = 4
SHARD_SIZE = 8  # 6 shards, the last one partial


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 5),
    ).eval()


def dataset() -> torch.utils.data.Dataset:
    g = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.randn(N_ITEMS, 3, 12, 12, generator=g),
                                          torch.randint(0, 5, (N_ITEMS,), generator=g))


def run(out: str, method: str = "PrunedGradient", sparsity: float = 0.7, net=None):
    from captum.attr import NoiseTunnel, Saliency

    from captum_prune import PrunedGradient, attribute_dataset

    net = model() if net is None else net
    if method == "PrunedGradient":
        explain, kwargs = PrunedGradient(net), {"sparsity": sparsity}
    elif method == "SmoothGrad":  # random: checks the per-batch seeding
        explain, kwargs = NoiseTunnel(Saliency(net)), {"nt_samples": 3, "stdevs": 0.5}
    else:
        raise ValueError(method)
    return attribute_dataset(explain, dataset(), out, batch_size=BATCH_SIZE,
                             shard_size=SHARD_SIZE, attribute_kwargs=kwargs)


if __name__ == "__main__":
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--method", default="PrunedGradient")
    parser.add_argument("--sparsity", type=float, default=0.7)
    args = parser.parse_args()
    store = run(args.out, args.method, args.sparsity)
    # One write per report: the ranks share the parent's stderr, and a print can be split
    # into several writes that interleave with the other rank's.
    os.write(sys.stderr.fileno(),
             f"rank {os.environ.get('RANK', 0)}: {store.run_info}\n".encode())
