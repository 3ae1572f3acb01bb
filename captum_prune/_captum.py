r"""The one module that imports Captum's internals (``captum._utils``, ``captum.attr._utils``).

Everything else in captum-prune uses Captum's public API (``captum.attr``, ``captum.log``) or
the names re-exported here. Each name below exists, with the same meaning, in captum 0.8.0
(the last release with Insights) and 0.9.0; a test checks that no other module of the package
imports Captum's private packages.
"""
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _is_tuple,
    _run_forward,
    _select_targets,
    _verify_select_neuron,
)
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)

#: ``additional_forward_args`` as a tuple (``None`` stays ``None``).
format_additional_forward_args = _format_additional_forward_args
#: The attributions in the caller's input form (a tensor for a tensor, else a tuple).
format_output = _format_output
#: Whether the caller passed a tuple of inputs.
is_tuple = _is_tuple
#: ``forward_func(*inputs, *additional_forward_args)`` as Captum's methods call it.
run_forward = _run_forward
#: Captum's selection of the target's values from a model output.
select_targets = _select_targets

#: Captum's neuron selection (``NeuronGradient``'s ``neuron_selector``: an int or tuple index,
#: slices summed, or a function of the layer output) from a layer's recorded tensors.
verify_select_neuron = _verify_select_neuron

#: The integration rules of ``IntegratedGradients`` (``"gausslegendre"``, ``"riemann_*"``).
INTEGRATION_METHODS = tuple(SUPPORTED_METHODS)

__all__ = [
    "INTEGRATION_METHODS",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "approximation_parameters",
    "format_additional_forward_args",
    "format_output",
    "is_tuple",
    "run_forward",
    "select_targets",
    "verify_select_neuron",
]
