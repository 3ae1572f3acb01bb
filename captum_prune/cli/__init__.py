r"""The ``captum-prune`` command (also ``python -m captum_prune``).

Each subcommand lives in its own module of this package (:mod:`~captum_prune.cli.demo`,
:mod:`~captum_prune.cli.benchmark`, :mod:`~captum_prune.cli.speed`,
:mod:`~captum_prune.cli.insights`), which provides ``add_arguments(parser)`` and
``run(args) -> int`` and raises :class:`~captum_prune.cli.errors.CommandError` for a user
error. Modules are imported only when their subcommand runs, so a missing optional dependency
affects only that subcommand. Beside them: :mod:`~captum_prune.cli.methods` (the registry of
the methods the commands compare), :mod:`~captum_prune.cli.results` (the benchmark's results)
and :mod:`~captum_prune.cli.report` (figures, tables and the HTML report).
"""
import argparse
import importlib
import sys
from typing import List, Optional

from captum_prune.cli.errors import CommandError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captum-prune",
        description="Pathway-gradient (input-specific pruning) attributions for Captum.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        # Arguments are added lazily below, only for the chosen subcommand.
        sub.set_defaults(_name=name)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs ``captum-prune`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (2 for a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Find the subcommand first, then let its module add its own arguments.
    first, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    module_name = first._module
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        parser.error(
            f"'{first._name}' needs an optional dependency that is not installed ({error}); "
            "install captum-prune with its extras, e.g. pip install 'captum-prune[demo]'"
        )
    sub = argparse.ArgumentParser(
        prog=f"captum-prune {first._name}", description=SUBCOMMANDS[first._name][1]
    )
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except CommandError as error:
        print(f"captum-prune {first._name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
