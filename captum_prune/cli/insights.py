r"""``captum-prune insights``: Captum Insights (captum 0.8) with
:class:`~captum_prune.PrunedGradient` on the embedded digits model.

The Insights support itself is :mod:`captum_prune.integrations.insights`; this module is only
the command.
"""
import argparse
import ipaddress
import sys
import warnings

from captum_prune.cli.errors import CommandError

_LOOPBACK_NAMES = ("localhost",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r"""Adds the ``captum-prune insights`` options to ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to serve on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--greyscale", action="store_true",
        help="use 1-channel digits and a greyscale model (trained on first use)",
    )
    parser.add_argument(
        "--cache-dir", default=None,
        help="folder of the cached digits model "
        "(default: $CAPTUM_PRUNE_CACHE or ~/.cache/captum_prune)",
    )
    parser.add_argument("--retrain", action="store_true", help="retrain the digits model")
    # The digits model is tiny: on a busy machine OpenMP threads waiting on each other made it
    # many times slower. Its training always runs on one thread (the weights do not depend on
    # this option); this sets the threads of the attributions the page asks for.
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch while serving (default: 1, best for the "
                        "small digits model; 0 leaves torch's choice)")


def run(args: argparse.Namespace) -> int:
    r"""Serves Insights with the embedded digits model until interrupted."""
    from captum_prune.integrations import insights

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be from 0 to 65535, got {args.port}")
    try:
        insights._insights()
    except ImportError as error:
        raise CommandError(str(error)) from None
    from captum_prune.cli._common import torch_threads

    with torch_threads(args.threads):
        return _serve(args, insights)


def _serve(args: argparse.Namespace, insights) -> int:
    from captum_prune.zoo.data import make_digits_canvas
    from captum_prune.zoo.training import DigitsRecipe, load_default_model

    recipe = DigitsRecipe(channels=1 if args.greyscale else 3)
    model, info = load_default_model(
        cache_dir=args.cache_dir, retrain=args.retrain, progress=True, recipe=recipe
    )
    data = make_digits_canvas(
        "test", seed=recipe.data_seed, canvas_size=recipe.canvas_size,
        digit_size=recipe.digit_size, channels=recipe.channels,
    )
    visualizer = insights.build_digits_visualizer(model, data)
    insights._limit_methods(insights.DIGITS_METHODS)
    try:
        server = insights.serve(visualizer, args.host, args.port)
    except OSError as error:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    if not _is_loopback(args.host):
        print(
            f"warning: serving on {args.host}, which other machines may reach; Insights has "
            "no authentication.", file=sys.stderr,
        )
    print(
        f"Model: {info['path']} (test accuracy {info['test_accuracy']:.3f})\n"
        f"Captum Insights at http://{_url_host(args.host)}:{server.port}/ "
        "(press Ctrl+C to stop)",
        flush=True,
    )
    try:
        with warnings.catch_warnings():
            # Insights passes inputs without requires_grad; Captum warns about it on every
            # example. The server runs in this thread, so the filter covers its requests.
            warnings.filterwarnings("ignore", "It looks like that the attribution", UserWarning)
            server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
