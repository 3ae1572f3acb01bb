r"""
Attribution maps for whole datasets, on disk.

- :func:`attribute_dataset`: the maps of every item of a dataset with any Captum method,
  sharded, resumable, and shared between ``torchrun`` processes.
- :class:`MapStore`: reads a store by dataset index (a torch ``Dataset``); the evaluation
  protocols (ROAR, pixel perturbation) take one in place of a tensor of maps.
"""
from captum_prune.maps.attribute import attribute_dataset, model_fingerprint
from captum_prune.maps.store import MapStore

__all__ = ["attribute_dataset", "MapStore", "model_fingerprint"]
