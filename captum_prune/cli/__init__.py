r"""The ``captum-prune`` command (also ``python -m captum_prune``).

Each subcommand lives in its own module of this package (:mod:`~captum_prune.cli.demo`,
:mod:`~captum_prune.cli.benchmark`, :mod:`~captum_prune.cli.speed`,
:mod:`~captum_prune.cli.insights`), which provides ``add_arguments(parser)`` and
``run(args) -> int`` and raises :class:`~captum_prune.cli.errors.CommandError` for a user
error. Modules are imported only when their subcommand runs, so ``captum-prune --help`` and
``--version`` never import torch, and a missing optional dependency affects only that
subcommand: wherever it is imported (at the module's import or inside ``run``), the command
prints one line naming the extra to install and exits with status 2. Beside them:
:mod:`~captum_prune.cli.methods` (the registry of the methods the commands compare),
:mod:`~captum_prune.cli.results` (the benchmark's results) and :mod:`~captum_prune.cli.report`
(figures, tables and the HTML report).
"""
import argparse
import importlib
import sys
from typing import List, Optional

from captum_prune.cli.errors import CommandError, missing_extra_message

__all__ = ["main", "build_parser", "SUBCOMMANDS", "CommandError"]

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("captum_prune.cli.demo",
             "maps of PrunedGradient and Captum baselines on the embedded digits model"),
    "benchmark": ("captum_prune.cli.benchmark",
                  "sanity check, pixel perturbation, ROAR and localisation for many methods"),
    "speed": ("captum_prune.cli.speed",
              "time PrunedGradient against Saliency and IntegratedGradients"),
    "insights": ("captum_prune.cli.insights",
                 "serve Captum Insights (captum 0.8) with PrunedGradient on the digits model"),
    "attribute": ("captum_prune.cli.attribute",
                  "the maps of a whole dataset into a resumable map store (torchrun-ready)"),
}


def _version() -> str:
    # The package's __init__ imports nothing heavy until a public name is used.
    from captum_prune import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captum-prune",
        description="Pathway-gradient (input-specific pruning) attributions for Captum.",
        epilog="Run 'captum-prune COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"captum-prune {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        # Arguments are added lazily below, only for the chosen subcommand.
        sub.set_defaults(_name=name)
    return parser


def _missing(name: str, error: ImportError) -> int:
    print(f"captum-prune {name}: error: {missing_extra_message(error)}", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs ``captum-prune`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (2 for a user error or a missing optional dependency)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Find the subcommand first (its own options, --help included, are not known yet), then
    # let its module add its own arguments.
    first, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    name = first._name
    try:
        module = importlib.import_module(first._module)
    except ImportError as error:
        return _missing(name, error)
    sub = argparse.ArgumentParser(prog=f"captum-prune {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except CommandError as error:
        print(f"captum-prune {name}: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        # An optional dependency imported inside run() (scipy, scikit-learn, matplotlib...).
        if missing_extra_message(error, strict=True) is None:
            raise
        return _missing(name, error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
