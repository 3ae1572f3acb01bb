"""The ``>>>`` examples of the map-store modules run and print what they claim."""
import doctest
import importlib

import pytest

MODULES = ("captum_prune.maps", "captum_prune.maps.store", "captum_prune.maps.attribute",
           "captum_prune.maps.distributed", "captum_prune.cli.attribute")


def _examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in MODULES:
        for test in finder.find(importlib.import_module(name), name):
            if test.examples:
                yield test


@pytest.mark.parametrize("test", list(_examples()), ids=lambda t: t.name)
def test_docstring_examples(test):
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
