r"""The pathway gradient at a layer and for one neuron, as Captum's layer and neuron methods.

- :class:`LayerPrunedGradient` - Captum's ``LayerGradientXActivation`` through the input's
  pruned network: what text and language models need (token ids have no gradient; attribute to
  the embeddings), and accepted by ``captum.attr.LLMGradientAttribution``.
- :class:`NeuronPrunedGradient` - Captum's ``NeuronGradient`` through the critical pathway of
  one hidden neuron.
"""
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from captum.attr import GradientAttribution, LayerGradientXActivation, NeuronAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_prune import _auto, _engine, _safety
from captum_prune._captum import TargetType, TensorOrTupleOfTensorsGeneric, format_output
from captum_prune._neuron_forward import NeuronForward
from captum_prune.hooks import Capture
from captum_prune.layers import BatchDimsArg, LayersArg, resolve_batch_dims, resolve_layers
from captum_prune.options import DEFAULT_OUTPUT_CHANGE, DEFAULT_SPARSITY, PruningOptions
from captum_prune.pathway import Pathway
from captum_prune.pruned_gradient import PrunedGradient

NeuronSelector = Union[int, Tuple[Union[int, slice], ...], Callable]


def _attributed_layers(
    forward_func: Callable, layer: Union[nn.Module, Sequence[nn.Module]], what: str
) -> Tuple[List[nn.Module], List[str]]:
    """The attributed layer(s) as a list, with names; each must be a submodule of the model."""
    chosen = [layer] if isinstance(layer, nn.Module) else layer
    if not isinstance(chosen, (list, tuple)) or not chosen:
        raise TypeError(
            f"{what}: expected an nn.Module or a non-empty list of nn.Module, got "
            f"{type(layer).__name__}"
        )
    names_by_id = (
        {id(m): n for n, m in forward_func.named_modules()}
        if isinstance(forward_func, nn.Module) else {}
    )
    names = []
    for position, module in enumerate(chosen):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{what}: expected nn.Module instances, got {type(module).__name__}")
        if isinstance(forward_func, nn.Module) and id(module) not in names_by_id:
            raise ValueError(
                f"{what}: {type(module).__name__} is not a submodule of forward_func; pass a "
                "module of the model being explained (e.g. model.get_input_embeddings())"
            )
        names.append(names_by_id.get(id(module)) or f"{type(module).__name__}[{position}]")
    return list(chosen), names


def _no_device_ids(device_ids: Optional[List[int]]) -> None:
    if device_ids is not None:
        raise ValueError(
            "device_ids: the pathway gradient does not run under nn.DataParallel (its replicas "
            "run in other threads, whose hooks cannot be told apart); pass device_ids=None and "
            "the unwrapped model"
        )




class LayerPrunedGradient(LayerGradientXActivation):
    r"""The gradient of the target with respect to a layer, through the input's *critical
    pathway*, times the layer's activation.

    The pathway is chosen exactly as by :class:`~captum_prune.PrunedGradient` (every neuron of
    the neuron ``layers`` scored by ``|a * dy/da|`` for the target, the lowest ``sparsity``
    fraction masked to zero); the attribution is then Captum's ``LayerGradientXActivation`` of
    that pruned network: ``d target / d h * h`` for the output ``h`` of ``layer`` (or its input,
    with ``attribute_to_layer_input=True``), or the plain ``d target / d h`` with
    ``multiply_by_inputs=False``. At ``sparsity=0`` it equals ``LayerGradientXActivation``.

    The inputs need no gradient, so they may be token ids: attribute to the embeddings, as
    Captum's text workflows do with ``LayerIntegratedGradients(model, model.embeddings)``. It
    is a ``LayerGradientXActivation`` (gradient times activation of a layer, through the
    pathway), so ``captum.attr.LLMGradientAttribution`` accepts it; it keeps working when that
    class replaces its ``forward_func`` by its own wrapper of the model, since the neuron layers
    are the model's modules, found once at construction.

    **The attributed layer's own units** are pruned only if the layer is itself one of the
    neuron ``layers`` (by default, when it is an activation module). Its output ``h`` is, as
    in Captum, what the rest of the network receives: after its mask, so its pruned units have
    ``h = 0`` and a zero attribution (with ``multiply_by_inputs=False`` their gradient is the
    one of the pruned network downstream). Embeddings, blocks and linear layers are not neuron
    layers by default and are never masked themselves. ``h`` is the activation of the pruned
    pass: for a layer after some neuron layers it differs from the unpruned one.

    A layer must run once per forward (a module called twice raises a ``RuntimeError``, as
    does one never called); layers returning a tuple of tensors give a tuple of attributions,
    and a list of layers a list, as in Captum.

    Args:

        forward_func (Callable): The model (an ``nn.Module``) or a function of the inputs that
                    returns its output.
        layer (nn.Module or list of nn.Module): The layer(s) attributed to. Must be
                    submodules of ``forward_func`` when it is an ``nn.Module``.
        layers (nn.Module or Sequence[nn.Module], optional): The neuron layers, whose outputs
                    are pruned, as in :class:`~captum_prune.PrunedGradient`. Default: every
                    activation module (:func:`~captum_prune.layers.activation_types`, which
                    includes Hugging Face's GELU and SiLU modules), so in a transformer the
                    MLP activations, one neuron per token and unit.
        device_ids (list[int], optional): Captum's argument for ``nn.DataParallel``, which
                    the method does not support; must be None.
        multiply_by_inputs (bool, optional): Multiply the gradient by the layer's activation
                    (Captum's global attribution). Default: True
        batch_dims (optional): Where the batch dimension of each neuron layer's output is, as
                    in :class:`~captum_prune.PrunedGradient` (Hugging Face models are
                    batch-first: the default 0).

    Examples::

        >>> import torch
        >>> from captum_prune import LayerPrunedGradient
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> class TextClassifier(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embeddings = torch.nn.Embedding(20, 8)
        ...         self.mlp = torch.nn.Sequential(
        ...             torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
        ...     def forward(self, ids):
        ...         return self.mlp(self.embeddings(ids)).mean(1)
        >>> model = TextClassifier().eval()
        >>> ids = torch.tensor([[1, 5, 7, 2], [3, 3, 9, 4]])
        >>> lpg = LayerPrunedGradient(model, model.embeddings)
        >>> attribution = lpg.attribute(ids, target=1, sparsity=0.5)
        >>> attribution.shape  # one value per token and embedding unit
        torch.Size([2, 4, 8])
        >>> attribution.sum(-1).shape  # per token, as Captum's text tutorials sum
        torch.Size([2, 4])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Union[nn.Module, List[nn.Module]],
        layers: LayersArg = None,
        device_ids: Optional[List[int]] = None,
        multiply_by_inputs: bool = True,
        batch_dims: BatchDimsArg = None,
    ) -> None:
        _safety.check_forward_func(forward_func)
        _no_device_ids(device_ids)
        self._attributed, self._attributed_names = _attributed_layers(
            forward_func, layer, "layer"
        )
        LayerGradientXActivation.__init__(
            self, forward_func, layer, device_ids=None, multiply_by_inputs=multiply_by_inputs
        )
        self.layers, self.layer_names = resolve_layers(forward_func, layers)
        self.batch_dims = resolve_batch_dims(
            forward_func, self.layers, self.layer_names, batch_dims
        )

    def has_convergence_delta(self) -> bool:
        return False

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        grad_kwargs: Optional[dict] = None,
        sparsity: float = DEFAULT_SPARSITY,
        criterion: str = "taylor",
        selection: str = "global",
        threshold: str = "reference",
        n_steps: int = 10,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        output_change: float = DEFAULT_OUTPUT_CHANGE,
        probability: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> Union[Tensor, Tuple[Tensor, ...], List[Union[Tensor, Tuple[Tensor, ...]]]]:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input(s) of ``forward_func``, the batch
                        first; any dtype (token ids are fine: no gradient is taken for them).
            target (int, tuple, Tensor, or list, optional): The model output differentiated,
                        in any of Captum's forms; it also selects the pathway. None only
                        when the model returns one value per example.
                        Default: None
            additional_forward_args (Any, optional): Extra arguments of ``forward_func``
                        after the inputs, of any type. Default: None
            attribute_to_layer_input (bool, optional): Attribute to the layer's positional
                        inputs instead of its output. Default: False
            grad_kwargs (dict, optional): Extra keyword arguments of the pruned pass's
                        ``torch.autograd.grad``. Default: None
            sparsity, criterion, selection, threshold, n_steps, method: The method's options,
                        as in :meth:`PrunedGradient.attribute
                        <captum_prune.PrunedGradient.attribute>`, as are
                        ``internal_batch_size``, ``output_change`` and ``probability``
                        (``sparsity="auto"`` included).

        Returns:
            *Tensor*, *tuple[Tensor, ...]* or *list* of **attributions**:
            - **attributions**: ``d target / d h * h`` (or ``d target / d h``) through the
                        pruned network, of the shape of the layer's output (or input),
                        detached. A tuple when the layer returns (takes) several tensors, a
                        list when several layers were given.
        """
        options = PruningOptions(
            sparsity=sparsity, criterion=criterion, selection=selection, threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )
        captures = [Capture(m, to_input=attribute_to_layer_input) for m in self._attributed]
        with _engine.session(
            self.forward_func, self.layers, self.layer_names, self.batch_dims, inputs,
            _engine.TargetObjective(target), additional_forward_args, captures=captures,
            floating=False,
        ) as run:
            scored = _engine.score(run, options)
            masks, _ = _auto.select(run, scored, options)
            scored.scores = []
            pruned = _engine.pruned_pass(
                run, scored.calls, masks, wrt=tuple(range(len(captures))),
                grad_kwargs=grad_kwargs,
            )
        results = []
        for name, gradients, activations in zip(
            self._attributed_names, pruned.gradients, pruned.activations
        ):
            _check_one_call(name, len(activations))
            grads, acts = gradients[0], activations[0]
            _check_tensors(name, acts)
            results.append(format_output(len(acts) > 1, self.multiply_gradient_acts(grads, acts)))
        return results[0] if isinstance(self.layer, nn.Module) else results


def _check_one_call(name: str, calls: int) -> None:
    if calls == 0:
        raise RuntimeError(
            f"layer: '{name}' was never called during the forward pass, so there is nothing "
            "to attribute to; pass a module that runs in forward_func (for a Hugging Face "
            "model, e.g. model.get_input_embeddings())"
        )
    if calls > 1:
        raise RuntimeError(
            f"layer: '{name}' is called {calls} times per forward pass, so which call to "
            "attribute to is ambiguous; attribute to a module that runs once (or wrap the call "
            "you mean in a module of its own)"
        )


def _check_tensors(name: str, tensors: Tuple[Tensor, ...]) -> None:
    if not tensors:
        raise ValueError(
            f"layer: '{name}' received no positional tensor inputs (called with keyword "
            "arguments only?), so there is nothing to attribute to; attribute to its output or "
            "to another layer"
        )
    for t in tensors:
        if not t.is_floating_point():
            raise TypeError(
                f"layer: '{name}' produced (or received) a tensor of dtype {t.dtype}, which has "
                "no gradient; attribute to a layer with floating-point values (the embeddings, "
                "not the token ids)"
            )


class NeuronPrunedGradient(NeuronAttribution, GradientAttribution):
    r"""The input gradient of one hidden neuron through *its own* critical pathway.

    Captum's ``NeuronGradient`` differentiates one neuron of a layer (chosen by
    ``neuron_selector``) with respect to the inputs. Here the pathway is selected for that
    neuron instead of a model output: every neuron of the neuron ``layers`` that runs before
    ``layer`` returns is scored by ``|a * d neuron / d a|``, the lowest ``sparsity`` fraction of
    them is masked to zero, and the attribution is the input gradient of the neuron through
    that pruned network. Neuron layers that run later cannot change the neuron and are not part
    of its pathway (the forward stops once the neuron is computed); neither are the units of
    ``layer``'s own call when it is a neuron layer (the neuron is read as the layer computed
    it). At ``sparsity=0`` it equals ``NeuronGradient``. :meth:`pathway` returns the pathway
    for inspection.

    Args:

        forward_func (Callable): The model or a function of the inputs.
        layer (nn.Module): The layer of the neuron (called once per forward).
        layers (nn.Module or Sequence[nn.Module], optional): The neuron layers, as in
                    :class:`~captum_prune.PrunedGradient`. Default: every activation module.
        device_ids (list[int], optional): Captum's argument for ``nn.DataParallel``; must
                    be None.
        batch_dims (optional): As in :class:`~captum_prune.PrunedGradient`.

    Examples::

        >>> import torch
        >>> from captum_prune import NeuronPrunedGradient
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
        ...     torch.nn.GELU(), torch.nn.Linear(16, 2)).eval()
        >>> npg = NeuronPrunedGradient(model, model[3])
        >>> x = torch.randn(3, 6)
        >>> npg.attribute(x, neuron_selector=5, sparsity=0.5).shape
        torch.Size([3, 6])
        >>> path = npg.pathway(x, neuron_selector=5, sparsity=0.5)
        >>> path.layer_names  # only the layers before the neuron's
        ['1#0']
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: nn.Module,
        layers: LayersArg = None,
        device_ids: Optional[List[int]] = None,
        batch_dims: BatchDimsArg = None,
    ) -> None:
        _safety.check_forward_func(forward_func)
        _no_device_ids(device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer: expected an nn.Module, got {type(layer).__name__}")
        _, self._layer_names = _attributed_layers(forward_func, layer, "layer")
        NeuronAttribution.__init__(self, forward_func, layer, None)
        GradientAttribution.__init__(self, forward_func)
        self.layers, self.layer_names = resolve_layers(forward_func, layers)
        self.batch_dims = resolve_batch_dims(
            forward_func, self.layers, self.layer_names, batch_dims
        )

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def has_convergence_delta(self) -> bool:
        return False

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        neuron_selector: NeuronSelector,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        sparsity: float = DEFAULT_SPARSITY,
        criterion: str = "taylor",
        selection: str = "global",
        threshold: str = "reference",
        n_steps: int = 10,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        output_change: float = DEFAULT_OUTPUT_CHANGE,
        probability: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> TensorOrTupleOfTensorsGeneric:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input(s) to explain, floating point, the
                        batch first.
            neuron_selector (int, tuple or Callable): The neuron, as in Captum's
                        ``NeuronGradient``: an int or a tuple indexing the layer's output
                        without the batch dimension (slices are summed), or a function of
                        the layer's output returning one value per example.
            additional_forward_args (Any, optional): Extra arguments of ``forward_func``.
                        Default: None
            attribute_to_neuron_input (bool, optional): Select the neuron from the layer's
                        input instead of its output. Default: False
            sparsity, criterion, selection, threshold, n_steps, method: The method's options,
                        as in :meth:`PrunedGradient.attribute
                        <captum_prune.PrunedGradient.attribute>`, as are
                        ``internal_batch_size``, ``output_change`` and ``probability``
                        (``sparsity="auto"`` included).

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**: the gradient of the neuron
            with respect to each input through its pruned network, of the inputs' shapes.
        """
        return self._method(
            neuron_selector, attribute_to_neuron_input
        ).attribute(
            inputs, None, additional_forward_args,
            sparsity=sparsity, criterion=criterion, selection=selection, threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )

    def pathway(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        neuron_selector: NeuronSelector,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        sparsity: float = DEFAULT_SPARSITY,
        criterion: str = "taylor",
        selection: str = "global",
        threshold: str = "reference",
        n_steps: int = 10,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        output_change: float = DEFAULT_OUTPUT_CHANGE,
        probability: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> Pathway:
        r"""The critical pathway of the neuron that :meth:`attribute` would use (same
        arguments): a :class:`~captum_prune.Pathway` over the neuron layer calls before the
        neuron, whose ``original_target`` and ``pruned_target`` are the neuron's value per
        example without and with pruning."""
        return self._method(
            neuron_selector, attribute_to_neuron_input
        ).pathway(
            inputs, None, additional_forward_args,
            sparsity=sparsity, criterion=criterion, selection=selection, threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )

    def _method(self, neuron_selector: NeuronSelector, to_input: bool) -> PrunedGradient:
        """A PrunedGradient whose model output is the neuron."""
        if not (callable(neuron_selector) or isinstance(neuron_selector, (int, tuple))):
            raise TypeError(
                f"neuron_selector: expected an int, a tuple or a callable, got "
                f"{type(neuron_selector).__name__}"
            )
        neuron = NeuronForward(
            self.forward_func, self.layer, self._layer_names[0], neuron_selector, to_input,
            self.layers,
        )
        method = PrunedGradient(neuron, layers=self.layers, batch_dims=self.batch_dims)
        method.layer_names = list(self.layer_names)
        return method
