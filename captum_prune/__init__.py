r"""captum-prune: input-specific network pruning ("pathway gradient") attributions for Captum.

The public API at a glance:

- :class:`PrunedGradient` - the attribution method (a Captum ``GradientAttribution``).
- :class:`PruningOptions` - its options as one validated value.
- :class:`LayerPrunedGradient` and :class:`NeuronPrunedGradient` - the same at a layer (token
  embeddings, ``LLMGradientAttribution``) and for one hidden neuron.
- :class:`Pathway` - the critical pathway of an input, from :meth:`PrunedGradient.pathway`.
- :func:`pathway_jaccard` - overlap of two pathways.
- :func:`find_activation_layers`, :data:`ACTIVATION_TYPES` and
  :func:`register_activation_type` - the default neuron layers.
- :func:`attribute_dataset` and :class:`MapStore` - the maps of a whole dataset, on disk.
- :class:`EmptyAttributionWarning` - warned when the pruned network no longer depends on an
  example's input.

The names are imported on first use (:pep:`562`), so ``import captum_prune`` alone, and with
it ``captum-prune --help`` and ``--version``, does not import torch.
"""
import importlib
from typing import TYPE_CHECKING, Any, List

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "PrunedGradient": "captum_prune.pruned_gradient",
    "PruningOptions": "captum_prune.options",
    "LayerPrunedGradient": "captum_prune.layer_attribution",
    "NeuronPrunedGradient": "captum_prune.layer_attribution",
    "Pathway": "captum_prune.pathway",
    "pathway_jaccard": "captum_prune.pathway",
    "find_activation_layers": "captum_prune.layers",
    "ACTIVATION_TYPES": "captum_prune.layers",
    "register_activation_type": "captum_prune.layers",
    "attribute_dataset": "captum_prune.maps",
    "MapStore": "captum_prune.maps",
    "EmptyAttributionWarning": "captum_prune._safety",
}

# Spelled out (not built from _EXPORTS) so that linters and IDEs can read it.
__all__ = [
    "PrunedGradient",
    "PruningOptions",
    "LayerPrunedGradient",
    "NeuronPrunedGradient",
    "Pathway",
    "pathway_jaccard",
    "find_activation_layers",
    "ACTIVATION_TYPES",
    "register_activation_type",
    "attribute_dataset",
    "MapStore",
    "EmptyAttributionWarning",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from captum_prune._safety import EmptyAttributionWarning
    from captum_prune.layer_attribution import LayerPrunedGradient, NeuronPrunedGradient
    from captum_prune.layers import (
        ACTIVATION_TYPES,
        find_activation_layers,
        register_activation_type,
    )
    from captum_prune.maps import MapStore, attribute_dataset
    from captum_prune.options import PruningOptions
    from captum_prune.pathway import Pathway, pathway_jaccard
    from captum_prune.pruned_gradient import PrunedGradient


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'captum_prune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
