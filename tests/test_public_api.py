"""The public names: every one listed in ``__all__`` resolves, lazily, to its defining module."""
import importlib

import captum_prune


def test_all_lists_exactly_the_lazy_exports_and_each_resolves():
    assert set(captum_prune.__all__) - {"__version__"} == set(captum_prune._EXPORTS)
    for name, module in captum_prune._EXPORTS.items():
        assert getattr(captum_prune, name) is getattr(importlib.import_module(module), name)
    assert set(captum_prune.__all__) <= set(dir(captum_prune))
