r"""The error type of the command line and the message for a missing optional dependency,
apart from the dispatcher, so that the commands never import :mod:`captum_prune.cli` itself."""
from typing import Optional

#: Top-level module -> (extra of setup.cfg that installs it, what it is for).
OPTIONAL_MODULES = {
    "sklearn": ("demo", "scikit-learn"),
    "scipy": ("demo", "scipy"),
    "skimage": ("demo", "scikit-image"),
    "matplotlib": ("demo", "matplotlib"),
    "tqdm": ("demo", "tqdm"),
    "flask": ("insights", "flask"),
    "flask_compress": ("insights", "flask-compress"),
}


class CommandError(Exception):
    r"""A user-facing error: printed without a traceback, exit status 2."""


def missing_extra_message(error: ImportError, strict: bool = False) -> Optional[str]:
    r"""One line naming the extra that provides the module ``error`` could not import, and the
    command that installs it from a checkout; with ``strict``, None when the module is not one
    of an extra's (a bug to show with its traceback, not a missing extra)."""
    module = (getattr(error, "name", None) or "").split(".")[0]
    if module == "captum" and "insights" in str(error):
        extra, package = "insights", "Captum Insights (captum 0.8)"
    elif module in OPTIONAL_MODULES:
        extra, package = OPTIONAL_MODULES[module]
    elif strict:
        return None
    else:
        return (f"cannot import {getattr(error, 'name', None) or error}; reinstall captum-prune "
                "from your checkout: pip install -e '.[demo]' (or pip install '.[demo]')")
    return (f"this command needs {package}, which the '{extra}' extra installs: from your "
            f"checkout run pip install -e '.[{extra}]' (or pip install '.[{extra}]')")
