r"""The critical pathway of an input: which neurons survive pruning, and what they compute."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor


@dataclass
class Pathway:
    r"""The pathway that :meth:`PrunedGradient.pathway <captum_prune.PrunedGradient.pathway>`
    selected for a batch of inputs.

    Every list has one entry per layer *call* in forward order, so a module used twice in a
    forward (torchvision ResNet blocks) appears twice (``"layer1.0.relu#0"`` and ``"#1"``).
    """

    #: ``"<module name>#<call index>"`` for each layer call.
    layer_names: List[str]
    #: Keep-masks (bool, the call's output shape including the batch dimension).
    masks: List[Tensor]
    #: Neuron scores from the selection criterion, same shapes as ``masks``.
    scores: List[Tensor]
    #: The unpruned layer outputs, same shapes as ``masks``.
    activations: List[Tensor]
    #: Model output of the unpruned and of the pruned network.
    original_output: Tensor
    pruned_output: Tensor
    #: The target value per example, unpruned and pruned.
    original_target: Tensor
    pruned_target: Tensor
    #: ``(N,)`` float64: the sparsity each example was pruned at (the one asked for, or the
    #: one ``sparsity="auto"`` chose).
    sparsity: Optional[Tensor] = None

    @property
    def kept_fraction_per_layer(self) -> Tensor:
        r"""``(N, calls)``: fraction of each call's neurons kept, per example."""
        return torch.stack(
            [m.flatten(1).float().mean(dim=1) for m in self.masks], dim=1
        )

    @property
    def kept_fraction(self) -> Tensor:
        r"""``(N,)``: fraction of all neurons kept, per example."""
        kept = sum(m.flatten(1).sum(dim=1) for m in self.masks)
        total = sum(m[0].numel() for m in self.masks)
        return kept.float() / total

    @property
    def num_neurons(self) -> int:
        r"""Neurons per example, all layer calls together."""
        return sum(m[0].numel() for m in self.masks)

    def dead_fraction(self) -> Tensor:
        r"""``(N,)``: share of the kept neurons whose activation is exactly zero.

        The paper uses it to show that a criterion picks real (not dead) neurons.
        """
        dead = sum(
            (m & (a == 0)).flatten(1).sum(dim=1)
            for m, a in zip(self.masks, self.activations)
        )
        kept = sum(m.flatten(1).sum(dim=1) for m in self.masks)
        return dead.float() / kept.clamp(min=1).float()

    def jaccard(self, other: "Pathway") -> Tensor:
        r"""``(N,)``: Jaccard overlap ``|A∩B| / |A∪B|`` of two pathways of the same inputs."""
        return pathway_jaccard(self.masks, other.masks)

    def __repr__(self) -> str:
        # The default dataclass repr prints every mask, score and activation tensor (hundreds
        # of thousands of characters for one image); this is what a reader wants first.
        n = self.masks[0].shape[0] if self.masks else 0
        kept = self.kept_fraction.tolist() if self.masks else []

        def values(items: List[float]) -> str:
            shown = ", ".join(f"{v:.4g}" for v in items[:4])
            return f"[{shown}{', ...' if len(items) > 4 else ''}]"

        return (
            f"Pathway({n} input{'s' if n != 1 else ''}, {len(self.layer_names)} layer calls, "
            f"{self.num_neurons if self.masks else 0} neurons per input, "
            f"kept_fraction={values(kept)}, "
            f"original_target={values(self.original_target.detach().flatten().tolist())}, "
            f"pruned_target={values(self.pruned_target.detach().flatten().tolist())})"
        )

    def summary(self) -> Dict[str, List[float]]:
        r"""A JSON-friendly summary: kept and dead fractions, target before and after."""
        return {
            "kept_fraction": self.kept_fraction.tolist(),
            "dead_fraction": self.dead_fraction().tolist(),
            "original_target": self.original_target.detach().flatten().tolist(),
            "pruned_target": self.pruned_target.detach().flatten().tolist(),
        }


def pathway_jaccard(masks_a: Sequence[Tensor], masks_b: Sequence[Tensor]) -> Tensor:
    r"""Per-example Jaccard overlap of two lists of keep-masks (one mask per layer call).

    Args:

        masks_a (Sequence[Tensor]): Bool masks, one per layer call.
        masks_b (Sequence[Tensor]): Bool masks of the same shapes.

    Returns:
        Tensor: ``(N,)`` overlap in ``[0, 1]`` (1 where both pathways are empty).
    """
    if len(masks_a) != len(masks_b) or any(
        a.shape != b.shape for a, b in zip(masks_a, masks_b)
    ):
        raise ValueError(
            "masks_b: the two pathways must come from the same model and inputs "
            "(same number of layer calls and the same shapes)"
        )
    inter = sum((a & b).flatten(1).sum(dim=1) for a, b in zip(masks_a, masks_b))
    union = sum((a | b).flatten(1).sum(dim=1) for a, b in zip(masks_a, masks_b))
    return torch.where(
        union > 0, inter.float() / union.clamp(min=1).float(), torch.ones_like(union).float()
    )
