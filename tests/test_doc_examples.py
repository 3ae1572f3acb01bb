r"""The ``>>>`` examples in the public docstrings run and print what they claim.

Captum-style ``Examples::`` blocks are literal blocks, which Sphinx's doctest builder does not
run, so they are collected here with :class:`doctest.DocTestFinder`: one test per docstring
that has examples. (The examples in the documentation pages run with
``sphinx-build -b doctest docs docs/_build/doctest``.)
"""
import doctest
import importlib

import pytest
import torch

MODULES = (
    "captum_prune",
    "captum_prune.pruned_gradient",
    "captum_prune.pathway",
    "captum_prune.layers",
    "captum_prune.layer_attribution",
    "captum_prune.criteria",
    "captum_prune.selection",
    "captum_prune.hooks",
    "captum_prune._shared",
    "captum_prune.evaluation",
    "captum_prune.evaluation._explain",
    "captum_prune.evaluation.sanity",
    "captum_prune.evaluation.perturbation",
    "captum_prune.evaluation.roar",
    "captum_prune.evaluation.localisation",
    "captum_prune.zoo.data",
    "captum_prune.zoo.models",
    "captum_prune.zoo.training",
    "captum_prune.integrations.insights",
    "captum_prune.cli",
    "captum_prune.cli.methods",
    "captum_prune.cli.results",
    "captum_prune.cli.report",
    "captum_prune.cli.demo",
    "captum_prune.cli.benchmark",
    "captum_prune.cli.speed",
    "captum_prune.cli.insights",
    "captum_prune.evaluation.ranking",
    "captum_prune.evaluation.statistics",
    "captum_prune.evaluation.controls",
    "captum_prune.evaluation.road",
    "captum_prune.evaluation.srg",
    "captum_prune.evaluation.grid_pointing",
    "captum_prune.evaluation.randomisation",
    "captum_prune.evaluation.linearity",
    "captum_prune.evaluation.sparsity",
    "captum_prune.options",
    "captum_prune.evaluation.compare",
    "captum_prune.zoo.datasets",
    "captum_prune.zoo.presets",
)

#: Docstring examples that are illustrations, not runnable doctests: they use names the
#: example does not define (``model``, ``images``) or print values they do not state.
#: Each must still fail, so a fixed example is noticed and taken off this list.
NOT_RUNNABLE = {}

#: Modules that could not be imported: test_modules_import fails on them (nothing here is
#: skipped for a missing package; the test extra installs all of them).
IMPORT_ERRORS = {}

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _collect():
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen = set()
    cases = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as error:  # the test extra installs everything: a real failure
            IMPORT_ERRORS[name] = repr(error)
            continue
        for test in finder.find(module, name):
            # Public names are re-exported, so the same docstring is found more than once.
            key = (test.filename, test.lineno, test.docstring)
            if not test.examples or key in seen:
                continue
            seen.add(key)
            cases.append(test)
    return sorted(cases, key=lambda t: t.name)


CASES = _collect()


def test_modules_import():
    assert not IMPORT_ERRORS, IMPORT_ERRORS


def test_examples_were_found():
    names = {case.name for case in CASES}
    assert "captum_prune.pruned_gradient.PrunedGradient" in names
    assert "captum_prune.layers.find_activation_layers" in names


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_docstring_examples(case):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    case.globs = dict(case.globs)
    # Some examples use torch without importing it, as the modules themselves do.
    case.globs.setdefault("torch", torch)
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    report = []
    try:
        result = runner.run(case, out=report.append)
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(state)
    if case.name in NOT_RUNNABLE:
        assert result.failed, (
            f"{case.name} now runs: remove it from NOT_RUNNABLE ({NOT_RUNNABLE[case.name]})"
        )
        pytest.xfail(NOT_RUNNABLE[case.name])
    assert result.failed == 0, "".join(report)
