r"""Which modules of a model are the "neurons" that get pruned."""
from typing import List, Optional, Sequence, Tuple, Union

from torch import nn

#: The ``torch.nn`` activation modules treated as neuron layers by default. The softmax family
#: (a normalisation over the output) and ``MultiheadAttention`` (a whole block that returns a
#: tuple) live in ``torch.nn.modules.activation`` too but are not element-wise activations.
ACTIVATION_TYPES: Tuple[type, ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Threshold,
    nn.GLU,
)

LayersArg = Optional[Union[nn.Module, Sequence[nn.Module]]]


def find_activation_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    r"""Every activation module of ``model`` (see :data:`ACTIVATION_TYPES`), with its name.

    For a network built from ``nn.ReLU`` modules this is exactly the paper's set of neurons.

    Args:

        model (nn.Module): The model to search.

    Returns:
        list of (name, module) in ``model.named_modules()`` order. A module is listed once
        even if it is called several times per forward; calls are told apart at run time.

    Examples::

        >>> import torchvision
        >>> from captum_prune import find_activation_layers
        >>> model = torchvision.models.resnet18()
        >>> [name for name, _ in find_activation_layers(model)][:3]
        ['relu', 'layer1.0.relu', 'layer1.1.relu']
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, ACTIVATION_TYPES)
    ]


def resolve_layers(
    forward_func, layers: LayersArg
) -> Tuple[List[nn.Module], List[str]]:
    r"""Validates the ``layers`` argument of :class:`~captum_prune.PrunedGradient`.

    Returns the modules and a readable name for each. Raises ``ValueError``/``TypeError``
    naming the argument when nothing usable is given.
    """
    model = forward_func if isinstance(forward_func, nn.Module) else None
    if layers is None:
        if model is None:
            raise ValueError(
                "layers: forward_func is not an nn.Module, so its activation modules cannot be "
                "found; pass layers=[...] with the modules whose outputs are the neurons"
            )
        found = find_activation_layers(model)
        if not found:
            raise ValueError(
                "layers: the model has no activation modules (nn.ReLU, nn.GELU, ...); if it "
                "uses functional activations (F.relu), pass layers=[...] with the modules "
                "whose outputs should be pruned"
            )
        return [m for _, m in found], [n for n, _ in found]

    if isinstance(layers, nn.Module):
        chosen = [layers]
    elif isinstance(layers, (list, tuple)) or (
        hasattr(layers, "__iter__") and not isinstance(layers, (str, bytes, dict))
    ):
        chosen = list(layers)
    else:
        raise TypeError(
            f"layers: expected an nn.Module, a sequence of nn.Module or None, got "
            f"{type(layers).__name__}"
        )
    if not chosen:
        raise ValueError("layers: got an empty list; pass at least one nn.Module or None")
    for layer in chosen:
        if not isinstance(layer, nn.Module):
            raise TypeError(
                f"layers: expected nn.Module instances, got {type(layer).__name__}"
            )
    if len({id(layer) for layer in chosen}) != len(chosen):
        raise ValueError("layers: a module is listed twice; list each module once")
    names_by_id = (
        {id(m): n for n, m in model.named_modules()} if model is not None else {}
    )
    names = []
    for position, layer in enumerate(chosen):
        if model is not None and id(layer) not in names_by_id:
            raise ValueError(
                f"layers: layers[{position}] ({type(layer).__name__}) is not a submodule of "
                "forward_func; pass modules of the model being explained"
            )
        names.append(names_by_id.get(id(layer)) or f"{type(layer).__name__}[{position}]")
    return chosen, names
