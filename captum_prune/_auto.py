r"""``sparsity="auto"``: per example, the largest sparsity that keeps the output close.

The bound (the authors' "15% output change"): with :math:`p_c` the target's probability in
the unpruned network and :math:`p_c^{pruned}` in the pruned one,

.. math:: |p_c^{pruned} - p_c| \le \text{output\_change} \cdot p_c

(checked in this multiplied form, in float64, so :math:`p_c = 0` needs no division: only an
unchanged zero passes). Probabilities are ``probability(output)``, by default the softmax over
dimension 1 of a ``(N, C)`` output with ``C >= 2`` (:func:`softmax_probability`); for other
outputs (one logit per example, several heads, probabilities already) pass your own function
of the same shape, e.g. ``torch.sigmoid`` for a binary logit, or refuse the option.

The search is a bisection per example on the sparsity grid :math:`j / 2^{B}`
(:data:`AUTO_STEPS` :math:`= B = 10`, a resolution of :math:`2^{-10} \approx 0.001`): the
interval starts at ``[0, 1)`` with 0 known to hold (no neuron pruned); each step selects the
pathway at the midpoint of every example's interval (the engine's selection with a
per-example sparsity, i.e. the percentile of that example's pooled scores) and runs one
forward-only masked pass (:func:`captum_prune._engine.masked_forward`) for the whole batch;
examples whose bound holds move up, the others down. The result ``s`` holds the bound and
``s + 2^{-10}`` does not (or is 1): maximal up to the resolution on the grid. If the output
change is not monotone in the sparsity, a larger sparsity beyond a failing one may hold
again; the bisection does not look there.

Cost on top of a plain call: :data:`AUTO_STEPS` forward-only passes through the pruned
network and as many selections (one per distinct per-example value), no extra backward pass.
The chosen sparsity of each example is returned in :attr:`Pathway.sparsity
<captum_prune.Pathway.sparsity>`; passing it back as a per-example ``sparsity`` tensor gives
the same pathway.
"""
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from captum_prune import _engine, _safety
from captum_prune.options import PruningOptions

#: Bisection steps of ``sparsity="auto"``: forward-only passes per call; the sparsity is
#: found to ``2 ** -AUTO_STEPS``.
AUTO_STEPS = 10
#: The resolution of the chosen sparsity.
AUTO_RESOLUTION = 2.0 ** -AUTO_STEPS


def softmax_probability(output: Tensor) -> Tensor:
    r"""The default ``probability``: the softmax over the classes of a ``(N, C)`` output
    (``C >= 2``), in at least float32."""
    if output.dim() != 2 or output.shape[1] < 2:
        raise ValueError(
            f"probability: sparsity='auto' compares softmax probabilities over the classes of "
            f"an (N, C) output with C >= 2, but the model returned shape "
            f"{tuple(output.shape)}; pass probability=<a function of the output that returns "
            f"probabilities of its shape> (e.g. torch.sigmoid for a binary logit)")
    return torch.softmax(output, dim=1, dtype=torch.promote_types(output.dtype, torch.float32))


def target_probability(
    probability: Optional[Callable[[Tensor], Tensor]],
    output: Tensor,
    objective: "_engine.Objective",
    num_examples: int,
) -> Tensor:
    r"""``(N,)`` float64: the target's probability under ``probability`` (None: softmax)."""
    probs = (softmax_probability if probability is None else probability)(output.detach())
    if not isinstance(probs, Tensor) or probs.shape != output.shape:
        shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(
            f"probability: must return a tensor of the model output's shape "
            f"{tuple(output.shape)}, got {shape}")
    return objective.values(probs, [], num_examples).detach().double()


def within_bound(pruned: Tensor, original: Tensor, output_change: float) -> Tensor:
    r"""``(N,)`` bool: ``|pruned - original| <= output_change * original`` in float64."""
    pruned, original = pruned.double(), original.double()
    return (pruned - original).abs() <= output_change * original


def choose_sparsity(
    run: "_engine.Run", scored, options: PruningOptions
) -> Tuple[List[Tensor], Tensor]:
    r"""The masks and the ``(N,)`` float64 sparsity of every example (see the module
    docstring), from the scores of ``scored`` and forwards only."""
    if not isinstance(run.objective, _engine.TargetObjective):
        raise ValueError("sparsity: 'auto' needs a target on the model output")
    n = run.num_examples
    original = target_probability(options.probability, scored.output, run.objective, n)
    device = scored.scores[0].device
    low = torch.zeros(n, dtype=torch.float64)
    high = torch.ones(n, dtype=torch.float64)
    best = [torch.ones(s.shape, dtype=torch.bool, device=s.device) for s in scored.scores]
    with _engine.phase("auto"):
        for _ in range(AUTO_STEPS):
            middle = (low + high) / 2
            masks = _engine.select_masks(scored.scores, middle, options.selection,
                                         options.threshold)
            output, _ = _engine.masked_forward(run, scored.calls, masks)
            pruned = target_probability(options.probability, output, run.objective, n)
            holds = within_bound(pruned, original, options.output_change).cpu()
            low = torch.where(holds, middle, low)
            high = torch.where(holds, high, middle)
            rows = holds.nonzero().flatten().to(device)
            if rows.numel():
                for kept, mask in zip(best, masks):
                    kept[rows] = mask[rows]
    return best, low


def check_bound(pruned_output: Tensor, scored, run: "_engine.Run",
                options: PruningOptions) -> None:
    r"""Warns if the pruned pass broke the bound that its forward-only pass met (only a
    model that computes differently from pass to pass can: dropout or BatchNorm in train
    mode)."""
    n = run.num_examples
    original = target_probability(options.probability, scored.output, run.objective, n)
    pruned = target_probability(options.probability, pruned_output, run.objective, n)
    broken = (~within_bound(pruned, original, options.output_change)).nonzero().flatten()
    if broken.numel():
        _safety.warn(
            f"PrunedGradient: sparsity='auto' met output_change={options.output_change:g} in "
            f"its forward-only passes but not in the pruned pass for example(s) "
            f"{broken.tolist()[:10]}: the model computes differently from pass to pass "
            "(train mode?). Call model.eval() first.")
