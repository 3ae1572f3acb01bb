r"""The loop shared by ROAD and SRG: rank once, remove pixels at every fraction, record the
target probability (and whether the arg-max still equals the target) per example."""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from captum_prune._shared import predict
from captum_prune.evaluation._explain import (
    TargetType,
    as_target,
    attribute,
    batches,
    check_batch_size,
    check_explainer,
    check_fractions,
    check_images,
    check_map_matches,
    check_target,
    progress_bar,
)
from captum_prune.evaluation.perturbation import MODES, n_removed
from captum_prune.evaluation.ranking import SeedType, check_tie_break, rank_pixels

#: ``remove(x, removed, first_index, mode, fraction_index) -> x_tilde``: ``removed`` is the
#: boolean ``B x H x W`` mask of the pixels to remove from the batch ``x`` (``B x C x H x W``)
#: whose first example has index ``first_index`` in the whole set.
Remover = Callable[[Tensor, Tensor, int, str, int], Tensor]


@dataclass
class Curves:
    probability: Dict[str, Tensor]
    correct: Dict[str, Tensor]
    target: Tensor
    original_probability: Tensor
    tied_share: Tensor
    #: The dtype of the model output (the float64 probabilities hold its values exactly).
    dtype: torch.dtype = torch.float64


def check_modes(modes: Sequence[str]) -> List[str]:
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise ValueError(f"modes must be distinct entries of {MODES}, got {modes!r}")
    return modes


def removal_curves(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Any,
    target: TargetType,
    fractions: Sequence[float],
    modes: Sequence[str],
    remove: Remover,
    *,
    tie_break: str,
    seed: SeedType,
    batch_size: int,
    attribute_kwargs: Optional[Dict[str, Any]],
    apply_softmax: bool,
    progress: bool,
    desc: str,
    max_fraction_below_one: bool = False,
) -> Curves:
    inputs = check_images(inputs, "inputs")
    fractions = check_fractions(fractions)
    modes = check_modes(modes)
    check_tie_break(tie_break)
    batch_size = check_batch_size(batch_size)
    precomputed = check_explainer(attributions, inputs)
    n_pixels = inputs.shape[-2] * inputs.shape[-1]
    counts = [n_removed(f, n_pixels) for f in fractions]
    if max_fraction_below_one and counts[-1] >= n_pixels:
        raise ValueError(
            f"fractions must leave at least one pixel of the {n_pixels} (got {fractions[-1]}): "
            "imputation needs known neighbours"
        )
    n = len(inputs)
    target = as_target(target, n, inputs.device)
    if target is None:
        target = predict(model, inputs, batch_size)

    def output(x: Tensor) -> Tensor:
        out = model(x)
        return torch.softmax(out, dim=1) if apply_softmax else out

    prob = {m: [] for m in modes}
    correct = {m: [] for m in modes}
    p_orig, ties = [], []
    dtype = torch.float64  # the model output's, once a batch has run
    steps = progress_bar(batches(n, batch_size), progress, desc, total=math.ceil(n / batch_size))
    for rows in steps:
        x, t = inputs[rows], target[rows]
        with torch.no_grad():  # first: a bad target is named before any attribution
            logits = model(x)
            check_target(t, logits)
            first = torch.softmax(logits, dim=1) if apply_softmax else logits
            p_orig.append(first.gather(1, t.view(-1, 1)).squeeze(1).detach().cpu())
            dtype = first.dtype
        if precomputed:
            maps = attributions[rows].to(x.device)
        else:
            maps = attribute(attributions, x, t, **(attribute_kwargs or {}))
            check_map_matches(maps, x, "attributions")
        for mode in modes:
            ranking = rank_pixels(maps, mode == "morf", tie_break, seed, index_offset=rows.start)
            if mode == modes[0]:
                ties.append(ranking.tied_share)
            p_row, c_row = [], []
            for j, k in enumerate(counts):
                x_tilde = remove(x.detach(), ranking.removed(k), rows.start, mode, j)
                with torch.no_grad():
                    out = output(x_tilde)
                p_row.append(out.gather(1, t.view(-1, 1)).squeeze(1).detach().cpu().double())
                c_row.append((out.argmax(dim=1) == t).cpu())
            prob[mode].append(torch.stack(p_row, dim=1))
            correct[mode].append(torch.stack(c_row, dim=1))
    return Curves(
        probability={m: torch.cat(v) for m, v in prob.items()},
        correct={m: torch.cat(v) for m, v in correct.items()},
        target=target.detach().cpu(),
        original_probability=torch.cat(p_orig).double(),
        tied_share=torch.cat(ties),
        dtype=dtype,
    )

