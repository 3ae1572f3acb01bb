r"""Sphinx configuration of the captum-prune documentation.

Besides Sphinx and its bundled extensions, the ``docs`` extra installs two packages so the
pages work offline, opened from disk: the ``furo`` theme (its CSS and scripts are bundled; code
blocks scroll instead of being clipped on narrow screens) and ``sphinx-mathjax-offline``, which
copies MathJax into the build, so formulas render without a CDN. Build with warnings as
errors::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest
"""
import argparse
import importlib
import os
import sys

from docutils import nodes
from docutils.parsers.rst import Directive, directives

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import captum_prune  # noqa: E402

project = "captum-prune"
author = "captum-prune contributors"
copyright = "2026, captum-prune contributors"
version = release = captum_prune.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    # MathJax copied into _build/html/_static/mathjax: no CDN (the module's name has dashes).
    "sphinx-mathjax-offline",
]

exclude_patterns = ["_build"]
templates_path = []
html_theme = "furo"
html_title = f"captum-prune {release}"
html_static_path = ["_static"]

# Docstrings are Captum style (Google): napoleon parses Args / Returns / Examples.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes sections become :ivar: fields, so dataclass fields that autodoc also lists are
# not described twice.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
# Type names in signatures and docstrings that are not documented here.
nitpicky = False
suppress_warnings = []

# The doctest builder runs the ``.. doctest::`` and ``>>>`` blocks of the pages (not the
# Captum-style ``Examples::`` literal blocks of docstrings; tests/test_doc_examples.py runs those).
doctest_global_setup = """
import warnings
warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
import torch
torch.set_num_threads(2)
torch.manual_seed(0)
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS | __import__("doctest").NORMALIZE_WHITESPACE
)
doctest_test_doctest_blocks = "default"


class CommandHelp(Directive):
    r"""``.. command-help:: demo`` renders ``captum-prune demo --help`` as a literal block.

    The option list is built from the subcommand module's own ``add_arguments``, exactly as the
    command line does (see :func:`captum_prune.cli.main`), so the page cannot go stale. A module
    that cannot be imported (e.g. an optional dependency missing) is reported as a warning.
    """

    required_arguments = 1
    option_spec = {"width": directives.positive_int}

    def run(self):
        from captum_prune import cli

        name = self.arguments[0]
        if name not in cli.SUBCOMMANDS:
            raise self.error(f"command-help: unknown subcommand {name!r}")
        module_name, help_text = cli.SUBCOMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise self.error(f"command-help: cannot import {module_name}: {error}") from None
        parser = argparse.ArgumentParser(prog=f"captum-prune {name}", description=help_text)
        module.add_arguments(parser)
        width = self.options.get("width", 92)
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(width)
        try:
            text = parser.format_help()
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("command-help", CommandHelp)
    return {"parallel_read_safe": True}

