r"""
:class:`~captum_prune.PrunedGradient` in Captum Insights (the ``captum-prune insights`` command
is :mod:`captum_prune.cli.insights`).

Captum Insights (the web page that shows attributions next to a model's predictions) exists
only up to captum 0.8.0; captum 0.9.0 retired it. Everything here therefore needs captum 0.8
in an environment of its own: ``pip install 'captum-prune[insights]'``. Importing this module
works under any captum; the functions that need Insights raise an :class:`ImportError` that
says so.

- :func:`register` adds "Pruned Gradient" to the page's method list, with its sparsity (an
  integer percent) and criterion as arguments.
- :class:`InsightsImageFeature` is a drop-in replacement for Insights' ``ImageFeature``
  that also shows greyscale images, and shows a message instead of failing when an
  attribution is zero everywhere (Insights' own feature answers such maps with HTTP 500).
- :func:`build_digits_visualizer` and :func:`serve` set up the page for the embedded digits
  model.

All-zero maps: at a high sparsity the pruned network may no longer depend on the input at
all, so its gradient is zero everywhere. The page then keeps the sparsity the user chose and
shows, in place of that map, a panel that says so and suggests a lower sparsity; changing the
user's setting behind their back would mislabel the map.
"""
import importlib.util
import itertools
import textwrap
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from captum.log import log_usage
from torch import Tensor, nn

from captum_prune._shared import check_int, is_number
from captum_prune.criteria import CRITERIA
from captum_prune.options import DEFAULT_OUTPUT_CHANGE
from captum_prune.pruned_gradient import DEFAULT_SPARSITY, PrunedGradient

__all__ = [
    "register",
    "build_digits_visualizer",
    "serve",
    "insights_app",
    "METHOD_NAME",
    "AUTO_METHOD_NAME",
    "DIGITS_METHODS",
]

#: The name under which Insights lists :class:`~captum_prune.PrunedGradient`.
METHOD_NAME = PrunedGradient.get_name()

#: The name under which Insights lists PrunedGradient with ``sparsity="auto"``.
AUTO_METHOD_NAME = "Pruned Gradient (auto sparsity)"

#: The methods that ``captum-prune insights`` offers.
DIGITS_METHODS = (METHOD_NAME, AUTO_METHOD_NAME, "Integrated Gradients", "Saliency")

_INSTALL_HINT = (
    "Captum Insights was retired in captum 0.9; it needs captum 0.8 in an environment of "
    "its own, installed from your checkout with pip install -e '.[insights]' "
    "(or pip install '.[insights]')"
)

_EMPTY_MAP_MESSAGE = (
    "All-zero attribution: no map to show.\n\n"
    "Pruned Gradient: at this sparsity the pruned network no longer depends on the input. "
    "Lower the sparsity."
)

def _insights() -> Any:
    r"""Imports ``captum.insights.attr_vis`` or raises an ImportError that says what to do."""
    if importlib.util.find_spec("captum.insights") is None:
        import captum

        raise ImportError(f"{_INSTALL_HINT} (found captum {captum.__version__}).")
    try:
        from captum.insights import attr_vis
        from captum.insights.attr_vis import config, features, server  # noqa: F401
    except ImportError as error:
        # captum 0.8 is there, but the server's own dependencies (flask, ...) are not.
        raise ImportError(
            f"Captum Insights could not be imported ({error}); {_INSTALL_HINT}") from error
    return attr_vis


class _Fraction(float):
    r"""A sparsity already converted from percent, so converting it again is a no-op."""


def _percent_to_fraction(value: Any, name: str = "sparsity", low: float = 0) -> float:
    # Insights applies post_process to the same argument dict once per example, so this
    # must be idempotent: a _Fraction passes through unchanged.
    if isinstance(value, _Fraction) or value == "auto":  # "auto": PrunedGradient chooses
        return value
    error = f"{name}: expected a percent from {low:g} to 99, got {value!r}"
    if not (is_number(value) or isinstance(value, str)):
        raise ValueError(error)
    try:
        percent = float(value)
    except ValueError:
        raise ValueError(error) from None
    if not low <= percent < 100:
        raise ValueError(error)
    return _Fraction(percent / 100.0)


def _percent_change(value: Any) -> float:
    if value == "auto":
        raise ValueError("output_change: expected a percent from 1 to 99, got 'auto'")
    return _percent_to_fraction(value, "output_change", low=1)


class _AutoSparsityPrunedGradient(PrunedGradient):
    r"""PrunedGradient with ``sparsity="auto"``, as a method of its own on the Insights page
    (whose number fields cannot hold ``"auto"``): per example, the largest sparsity whose
    pruned network keeps the target's probability within ``output_change`` of the original."""

    @classmethod
    def get_name(cls) -> str:
        return AUTO_METHOD_NAME

    @log_usage()
    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        output_change: float = DEFAULT_OUTPUT_CHANGE,
        criterion: str = "taylor",
    ) -> Any:
        return PrunedGradient.attribute(
            self, inputs, target=target, additional_forward_args=additional_forward_args,
            sparsity="auto", output_change=float(output_change), criterion=criterion,
        )


def register() -> None:
    r"""
    Adds :class:`~captum_prune.PrunedGradient` to Captum Insights' attribution methods,
    as "Pruned Gradient" with two arguments: ``sparsity``, an integer percent of neurons
    pruned (the page reads numbers as integers; it reaches ``attribute()`` as a fraction),
    and ``criterion``, a choice of :data:`captum_prune.criteria.CRITERIA`; and, as
    :data:`AUTO_METHOD_NAME`, the same method with ``sparsity="auto"``, whose number is
    ``output_change`` in percent (the page's number fields cannot hold ``"auto"``).

    Insights' method tables are changed in place, since its modules hold references to
    them. Calling this again changes nothing. Call it before the page loads.

    Raises:
        ImportError: If Captum Insights is not importable (captum 0.9 retired it).

    Examples::

        >>> from captum_prune.integrations.insights import register
        >>> register()  # doctest: +SKIP
        >>> from captum.insights.attr_vis import config  # doctest: +SKIP
        >>> config.ATTRIBUTION_NAMES_TO_METHODS["Pruned Gradient"]  # doctest: +SKIP
        <class 'captum_prune.pruned_gradient.PrunedGradient'>
    """
    config = _insights().config
    config.ATTRIBUTION_NAMES_TO_METHODS[METHOD_NAME] = PrunedGradient
    config.ATTRIBUTION_METHOD_CONFIG[METHOD_NAME] = config.ConfigParameters(
        params={
            "sparsity": config.NumberConfig(value=round(DEFAULT_SPARSITY * 100), limit=(0, 99)),
            "criterion": config.StrEnumConfig(value="taylor", limit=list(CRITERIA)),
        },
        help_info="sparsity: percent of neurons pruned from the input's pathway",
        post_process={"sparsity": _percent_to_fraction},
    )
    config.ATTRIBUTION_NAMES_TO_METHODS[AUTO_METHOD_NAME] = _AutoSparsityPrunedGradient
    config.ATTRIBUTION_METHOD_CONFIG[AUTO_METHOD_NAME] = config.ConfigParameters(
        params={
            "output_change": config.NumberConfig(
                value=round(DEFAULT_OUTPUT_CHANGE * 100), limit=(1, 99)
            ),
            "criterion": config.StrEnumConfig(value="taylor", limit=list(CRITERIA)),
        },
        help_info="output_change: percent by which the pruned network may change the "
        "target's probability; the sparsity is chosen per image",
        post_process={"output_change": _percent_change},
    )


def _limit_methods(names: Sequence[str]) -> None:
    # Only for the standalone server: the other stock methods are not all usable on the
    # digits model (Occlusion needs window shapes typed in, DeepLift rejects reused ReLUs).
    config = _insights().config
    for name in list(config.ATTRIBUTION_NAMES_TO_METHODS):
        if name not in names:
            del config.ATTRIBUTION_NAMES_TO_METHODS[name]


def _to_hwc(tensor: Tensor, what: str) -> Any:
    """(1, C, H, W) or (C, H, W) tensor -> (H, W, C) numpy array."""
    array = tensor.detach().cpu()
    if array.dim() == 4 and array.shape[0] == 1:
        array = array[0]
    if array.dim() != 3:
        raise ValueError(
            f"{what}: expected an image of shape (1, C, H, W) or (C, H, W), "
            f"got {tuple(tensor.shape)}"
        )
    return array.permute(1, 2, 0).float().numpy()


def _message_figure(message: str) -> Any:
    from matplotlib.figure import Figure

    # Same size as Captum's panels, which the page shows at about a third of their size.
    figure = Figure(figsize=(6, 6))
    axis = figure.subplots()
    axis.set_xticks([])
    axis.set_yticks([])
    lines = "\n".join(textwrap.fill(part, 22) for part in message.split("\n"))
    axis.text(
        0.5, 0.5, lines, ha="center", va="center", fontsize=30, transform=axis.transAxes
    )
    return figure


@lru_cache(maxsize=1)
def _feature_class() -> type:
    features = _insights().features
    from captum.attr import visualization as viz

    class InsightsImageFeature(features.ImageFeature):
        r"""
        Insights' ``ImageFeature`` (same arguments), that also shows greyscale (1-channel)
        images, by repeating the channel for display, and that shows a message instead of
        raising when an attribution is zero everywhere.
        """

        def visualize(self, attribution: Tensor, data: Tensor, contribution_frac: float) -> Any:
            if self.visualization_transform:
                data = self.visualization_transform(data)
            image = _to_hwc(data, "data")
            attr = _to_hwc(attribution, "attribution")
            if image.shape[2] not in (1, 3):
                raise ValueError(f"data: expected 1 or 3 channels, got {image.shape[2]}")
            if image.shape[2] == 1:
                image = image.repeat(3, axis=2)  # shown in grey, not in a colour map
            # Captum normalises the attribution even for "original_image", and fails on
            # all zeros, so this panel gets a constant stand-in.
            original, _ = viz.visualize_image_attr(
                np.ones(image.shape[:2] + (1,)), image, method="original_image",
                use_pyplot=False,
            )
            if not attr.any():
                heat_map = _message_figure(_EMPTY_MAP_MESSAGE)
            else:
                heat_map, _ = viz.visualize_image_attr(
                    attr, image, method="heat_map", sign="absolute_value", use_pyplot=False
                )
            return features.FeatureOutput(
                name=self.name,
                base=features._convert_figure_base64(original),
                modified=features._convert_figure_base64(heat_map),
                type=self.visualization_type(),
                contribution=contribution_frac,
            )

    InsightsImageFeature.__module__ = __name__
    return InsightsImageFeature


def __getattr__(name: str) -> Any:
    # InsightsImageFeature subclasses a class of captum 0.8, so it is built on first use.
    if name == "InsightsImageFeature":
        return _feature_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _digit_batches(images: Tensor, labels: Tensor, batch_size: int) -> Iterator[Any]:
    """Endless batches through the images, so each fetch shows new examples."""
    batch_cls = _insights().Batch
    for start in itertools.count(0, batch_size):
        index = torch.arange(start, start + batch_size) % len(labels)
        yield batch_cls(inputs=images[index], labels=labels[index])


def build_digits_visualizer(
    model: nn.Module,
    data: Any,
    batch_size: int = 4,
) -> Any:
    r"""
    Captum Insights' ``AttributionVisualizer`` for a digits model, after :func:`register`.

    The page shows the raw images (greyscale or colour) and feeds the model their
    normalised version; predictions are softmax probabilities.

    Args:
        model (nn.Module): A classifier of ``data``'s normalised images, in eval mode.
        data (DigitsCanvasData): Images to show, e.g.
                    ``captum_prune.zoo.data.make_digits_canvas("test")``.
        batch_size (int, optional): Examples the visualizer reads per step. Default: 4

    Returns:
        AttributionVisualizer: Ready for :func:`serve` (or its own ``render()``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    check_int("batch_size", batch_size, minimum=1)
    attr_vis = _insights()
    register()
    feature = _feature_class()(
        "Digit", baseline_transforms=None, input_transforms=[data.normalize]
    )
    return attr_vis.AttributionVisualizer(
        models=[model],
        classes=list(data.classes),
        features=[feature],
        dataset=_digit_batches(data.denormalize(), data.labels, batch_size),
        score_func=lambda logits: torch.softmax(logits, dim=1),
    )


def serve(visualizer: Any, host: str = "127.0.0.1", port: int = 0) -> Any:
    r"""
    A web server for Insights' page and ``visualizer``, not yet started.

    Insights' own ``serve()`` runs Flask in a thread that cannot be stopped and binds to
    either localhost or every address; this serves the same Flask app on ``host`` with a
    server that can be stopped, one request at a time (the model is shared).

    Args:
        visualizer (AttributionVisualizer): What the page shows.
        host (str, optional): Address to bind. Default: "127.0.0.1"
        port (int, optional): Port; 0 picks a free one. Default: 0

    Returns:
        werkzeug.serving.BaseWSGIServer: Call ``serve_forever()`` to run it (``shutdown()``
        from another thread stops it) and ``server_close()`` afterwards; ``.port`` is the
        port.
    """
    from werkzeug.serving import make_server

    return make_server(host, port, insights_app(visualizer), threaded=False)


def insights_app(visualizer: Any) -> Any:
    r"""
    Insights' Flask app (page, ``/init``, ``/fetch`` and ``/attribute``), set to serve
    ``visualizer``; for a WSGI server of your own, or Flask's test client.

    Insights has one app per process, so the last visualizer given wins.

    Args:
        visualizer (AttributionVisualizer): What the page shows.

    Returns:
        flask.Flask: The app.
    """
    server_module = _insights().server
    # Insights' routes read the visualizer from this module global.
    server_module.visualizer = visualizer
    return server_module.app
