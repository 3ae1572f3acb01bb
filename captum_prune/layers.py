r"""Which modules of a model are the "neurons" that get pruned."""
import sys
from typing import List, Mapping, Optional, Sequence, Tuple, Union

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

#: Activation classes added with :func:`register_activation_type`, and the dotted paths of
#: those registered by name (resolved only once their module has been imported).
_REGISTERED_TYPES: List[type] = []
_REGISTERED_PATHS: List[str] = []

#: Hugging Face ``transformers`` activation modules (``transformers.activations``), registered
#: by name so that nothing imports ``transformers``: GPT-2's MLP uses ``NewGELUActivation``
#: (tanh GELU), BERT's ``GELUActivation``. ``LinearActivation`` (the identity) is left out.
HUGGING_FACE_ACTIVATIONS: Tuple[str, ...] = tuple(
    f"transformers.activations.{name}"
    for name in (
        "GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
        "GELUTanh", "PytorchGELUTanh", "ClippedGELUActivation", "AccurateGELUActivation",
        "SiLUActivation", "MishActivation", "LaplaceActivation", "ReLUSquaredActivation",
        "SqrtSoftplusActivation", "XIELUActivation",
    )
)


def register_activation_type(activation: Union[type, str]) -> Union[type, str]:
    r"""Adds a module class to the default neuron layers of every method.

    Use it for element-wise activation modules of other libraries, which are not subclasses of
    the ``torch.nn`` ones in :data:`ACTIVATION_TYPES`. The class may be given itself or as a
    dotted path (``"package.module.ClassName"``); a path is looked up only in modules already
    imported, so registering costs no import. Returns its argument, so it works as a class
    decorator. The Hugging Face activations of :data:`HUGGING_FACE_ACTIVATIONS` are registered
    this way.

    Examples::

        >>> import torch
        >>> from captum_prune import find_activation_layers, register_activation_type
        >>> @register_activation_type
        ... class Squared(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x * x
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), Squared(), torch.nn.Linear(4, 1))
        >>> [name for name, _ in find_activation_layers(model)]
        ['1']
    """
    if isinstance(activation, str):
        if activation.count(".") < 1:
            raise ValueError(
                f"activation: expected a class or a dotted path 'module.ClassName', got "
                f"{activation!r}"
            )
        if activation not in _REGISTERED_PATHS:
            _REGISTERED_PATHS.append(activation)
    elif isinstance(activation, type) and issubclass(activation, nn.Module):
        if activation not in _REGISTERED_TYPES:
            _REGISTERED_TYPES.append(activation)
    else:
        raise TypeError(
            f"activation: expected an nn.Module subclass or a dotted path, got "
            f"{type(activation).__name__}"
        )
    return activation


def activation_types() -> Tuple[type, ...]:
    r"""The classes whose instances are neuron layers by default: :data:`ACTIVATION_TYPES`
    and those registered with :func:`register_activation_type` (by name: once imported)."""
    found = list(ACTIVATION_TYPES) + _REGISTERED_TYPES
    for path in _REGISTERED_PATHS:
        module_name, _, class_name = path.rpartition(".")
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


for _path in HUGGING_FACE_ACTIVATIONS:
    register_activation_type(_path)

LayersArg = Optional[Union[nn.Module, Sequence[nn.Module]]]


def find_activation_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    r"""Every activation module of ``model`` (see :func:`activation_types`), with its name.

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
    types = activation_types()
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, types)
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


BatchDimsArg = Optional[Union[int, Sequence[int], Mapping[nn.Module, int]]]


def resolve_batch_dims(
    forward_func, layers: List[nn.Module], names: List[str], batch_dims: BatchDimsArg
) -> List[int]:
    r"""Validates the ``batch_dims`` argument of :class:`~captum_prune.PrunedGradient`.

    Returns the batch dimension of each layer's output. Where it is not given and a layer is
    (or lies inside) a module with ``batch_first=False`` (``nn.TransformerEncoderLayer``,
    ``nn.MultiheadAttention``, RNNs), its outputs are sequence-first, so the batch dimension
    is ambiguous: a ``ValueError`` asks for it instead of pooling examples together.
    """
    if batch_dims is None:
        dims: List[Optional[int]] = [None] * len(layers)
    elif isinstance(batch_dims, bool) or isinstance(batch_dims, int):
        dims = [batch_dims] * len(layers)
    elif isinstance(batch_dims, Mapping):
        ids = {id(layer) for layer in layers}
        for key in batch_dims:
            if id(key) not in ids:
                raise ValueError(
                    f"batch_dims: {type(key).__name__} is not one of the neuron layers; the "
                    "keys must be modules of layers"
                )
        by_id = {id(key): value for key, value in batch_dims.items()}
        dims = [by_id.get(id(layer), 0) for layer in layers]  # unlisted: batch-first
    elif isinstance(batch_dims, (list, tuple)):
        if len(batch_dims) != len(layers):
            raise ValueError(
                f"batch_dims: got {len(batch_dims)} entries for {len(layers)} layers; give "
                "one per layer, one int for all, or a dict {module: dim}"
            )
        dims = list(batch_dims)
    else:
        raise TypeError(
            f"batch_dims: expected None, an int, a sequence of ints or a dict "
            f"{{module: int}}, got {type(batch_dims).__name__}"
        )
    for dim in dims:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 0):
            raise ValueError(f"batch_dims: each entry must be an int >= 0, got {dim!r}")
    sequence_first = _sequence_first_layers(forward_func, layers)
    for position, (layer, dim) in enumerate(zip(layers, dims)):
        if dim is None and id(layer) in sequence_first:
            raise ValueError(
                f"batch_dims: layer '{names[position]}' is (inside) a module with "
                "batch_first=False, so its outputs are sequence-first and the batch dimension "
                "is ambiguous; pass batch_dims=1 (or a dict {module: dim}) to PrunedGradient"
            )
    return [0 if dim is None else dim for dim in dims]


def _sequence_first_layers(forward_func, layers: List[nn.Module]) -> set:
    """Ids of the layers that are, or lie inside, a module with ``batch_first=False``, or
    inside the parent of one (``nn.TransformerEncoderLayer`` keeps the flag on its
    ``self_attn``, and its feed-forward activation is a sibling of it)."""
    found = {id(layer) for layer in layers if getattr(layer, "batch_first", None) is False}
    if isinstance(forward_func, nn.Module):
        by_name = dict(forward_func.named_modules())
        for name, module in by_name.items():
            if getattr(module, "batch_first", None) is False:
                parent = by_name.get(name.rpartition(".")[0], module) if name else module
                found.update(id(sub) for sub in parent.modules())
    return found & {id(layer) for layer in layers}
