r"""The error type of the command line, apart from the dispatcher, so that the commands never
import :mod:`captum_prune.cli` itself."""


class CommandError(Exception):
    r"""A user-facing error: printed without a traceback, exit status 2."""
