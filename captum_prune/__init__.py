r"""captum-prune: input-specific network pruning ("pathway gradient") attributions for Captum.

The public API at a glance:

- :class:`PrunedGradient` - the attribution method (a Captum ``GradientAttribution``).
- :class:`PruningOptions` - its options as one validated value.
- :class:`Pathway` - the critical pathway of an input, from :meth:`PrunedGradient.pathway`.
- :func:`pathway_jaccard` - overlap of two pathways.
- :func:`find_activation_layers` and :data:`ACTIVATION_TYPES` - the default neuron layers.
- :func:`attribute_dataset` and :class:`MapStore` - the maps of a whole dataset, on disk.
"""
from captum_prune.layers import ACTIVATION_TYPES, find_activation_layers
from captum_prune.maps import MapStore, attribute_dataset
from captum_prune.options import PruningOptions
from captum_prune.pathway import Pathway, pathway_jaccard
from captum_prune.pruned_gradient import PrunedGradient

__version__ = "0.1.0"

__all__ = [
    "PrunedGradient",
    "PruningOptions",
    "Pathway",
    "pathway_jaccard",
    "find_activation_layers",
    "ACTIVATION_TYPES",
    "attribute_dataset",
    "MapStore",
    "__version__",
]
