r"""PrunedGradient: the pathway gradient of Khakzar et al. as a Captum attribution method."""
from dataclasses import replace
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_prune import _auto, _cpu, _engine, _safety
from captum_prune._captum import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    format_output,
    is_tuple,
)
from captum_prune._engine import PHASES
from captum_prune.layers import BatchDimsArg, LayersArg, resolve_batch_dims, resolve_layers
from captum_prune.options import DEFAULT_OUTPUT_CHANGE, DEFAULT_SPARSITY, PruningOptions
from captum_prune.pathway import Pathway

__all__ = ["PrunedGradient", "DEFAULT_SPARSITY", "PHASES"]


class PrunedGradient(GradientAttribution):
    r"""The gradient of the target through the input's *critical pathway*.

    For each input, every neuron (each element of each activation-module output, counted per
    call) is scored by its contribution to the target; the lowest-scoring ``sparsity``
    fraction is masked to zero; the attribution is the gradient of the target with respect to
    the input through that pruned network. With the default criterion (``"taylor"``,
    ``|activation x gradient|``) this is the paper's NeuronMCT pathway gradient, and the
    default selection reproduces the authors' code exactly.

    Cost: two forward and two backward passes (``"taylor"``), batched over examples. In
    ``torch.profiler`` traces a call shows as the ranges ``PrunedGradient.score``,
    ``PrunedGradient.select`` and ``PrunedGradient.pruned_pass``.

    The attribution is the raw, signed gradient (as ``Saliency(abs=False)``); it is not
    multiplied by the input. The model, its parameters, buffers, hooks, train/eval flags and
    the caller's tensors are left exactly as they were.

    References:
        A. Khakzar, S. Baselizadeh, S. Khanduja, C. Rupprecht, S. T. Kim, N. Navab.
        "Neural Response Interpretation through the Lens of Critical Pathways", CVPR 2021
        (arXiv 2103.16886); "Improving Feature Attribution through Input-specific Network
        Pruning", arXiv 1911.11081.

    Args:

        forward_func (Callable): The model (an ``nn.Module``) or a function of the inputs that
                    returns its output.
        layers (nn.Module or Sequence[nn.Module], optional): The modules whose outputs are
                    the neurons. Default: every activation module of ``forward_func`` (see
                    :data:`captum_prune.ACTIVATION_TYPES`), which for ReLU networks is the
                    paper's choice. Required when ``forward_func`` is not an ``nn.Module``.
                    Each module must return one tensor with the batch in dimension
                    ``batch_dims`` (the first, unless said otherwise).
        batch_dims (int, Sequence[int] or dict, optional): Where the batch dimension of each
                    layer's output is: one int for all layers, one per layer, or a dict
                    ``{module: dim}`` (unlisted layers: 0). Needed for sequence-first layers
                    such as those inside ``nn.TransformerEncoderLayer(batch_first=False)``,
                    whose outputs are ``(S, N, E)``: pass ``batch_dims=1``. A layer that is or
                    lies inside a module with ``batch_first=False`` must be given one, since
                    ``S == N`` would otherwise pool examples silently. Scores, masks and
                    activations in :class:`~captum_prune.Pathway` are always batch-first.
                    Default: 0 for every layer.

    Examples::

        >>> import torch, torchvision
        >>> from captum_prune import PrunedGradient
        >>> model = torchvision.models.resnet18(num_classes=10).eval()
        >>> x = torch.randn(2, 3, 32, 32)
        >>> pg = PrunedGradient(model)
        >>> attribution = pg.attribute(x, target=[3, 7], sparsity=0.9)
        >>> attribution.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self, forward_func: Callable, layers: LayersArg = None, batch_dims: BatchDimsArg = None
    ) -> None:
        _safety.check_forward_func(forward_func)
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
        target: TargetType = None,
        additional_forward_args: Any = None,
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

            inputs (Tensor or tuple[Tensor, ...]): Input(s) to explain, the batch as the first
                        dimension of each. Must be floating point.
            target (int, tuple, Tensor, or list, optional): The output index whose gradient is
                        taken, in any of Captum's forms: an int or a tuple (the same for every
                        example), a 0-dim or one-element tensor, or a list / 1-D tensor with one
                        entry per example. It selects the pathway *and* is differentiated
                        through it. May be None only when the model returns one value per
                        example (as in Captum's gradient methods).
                        Default: None
            additional_forward_args (Any, optional): Extra arguments passed to
                        ``forward_func`` after the inputs; no gradient is taken for them.
                        Default: None
            sparsity (float, str or Tensor, optional): Fraction of neurons pruned,
                        ``0 <= sparsity < 1``. The paper's code default is 0.85; its figures
                        use 0.70-0.90. A 1-D tensor gives one fraction per example.
                        ``"auto"`` chooses, per example, the largest sparsity whose pruned
                        network keeps the target's probability within ``output_change``
                        (relative) of the unpruned one, by bisection with forwards only (to
                        ``2**-10``; 10 extra forward passes, no extra backward); the choice is
                        reported in :attr:`Pathway.sparsity <captum_prune.Pathway.sparsity>`.
                        Default: 0.85
            criterion (str, optional): How neurons are scored:
                        ``"taylor"`` (``|a * dy/da|``, the paper's NeuronMCT),
                        ``"integrated_gradients"`` (the paper's NeuronIntGrad, per layer call,
                        on a proper grid over [0, 1]; costs ``calls x n_steps`` passes), or
                        ``"random"`` (the control baseline).
                        Default: "taylor"
            selection (str, optional): ``"global"`` (one threshold over all layers per
                        example, the paper's) or ``"per_layer"`` (each layer call pruned by
                        ``sparsity``).
                        Default: "global"
            threshold (str, optional): ``"reference"`` reproduces the authors' code: numpy's
                        linear percentile, neurons with ``score <= tau`` pruned, so every
                        zero-score neuron goes and low sparsities prune more than asked.
                        ``"exact"`` prunes exactly ``round(sparsity * n)`` neurons per example
                        (and per layer call with ``"per_layer"``), ties broken by forward
                        order.
                        Default: "reference"
            n_steps (int, optional): Integration steps of the ``"integrated_gradients"``
                        criterion. Default: 10
            method (str, optional): Integration rule of that criterion, as in
                        ``IntegratedGradients``: ``"gausslegendre"``, ``"riemann_trapezoid"``,
                        ``"riemann_left"``, ``"riemann_right"`` or ``"riemann_middle"``.
                        Default: "gausslegendre"
            internal_batch_size (int, optional): Rows (example x step) per forward pass of
                        the ``"integrated_gradients"`` criterion, to bound memory. Default:
                        all ``n_steps * N`` rows at once.
            output_change (float, optional): The bound of ``sparsity="auto"``:
                        ``|p_c^pruned - p_c| <= output_change * p_c`` for the target's
                        probability ``p_c`` (the authors' "15% output change").
                        Default: 0.15
            probability (callable, optional): ``output -> probabilities`` (same shape) used
                        by ``sparsity="auto"``. Default: the softmax over dimension 1, which
                        needs an ``(N, C)`` output with ``C >= 2``; pass e.g.
                        ``torch.sigmoid`` for a binary logit.

        Returns:
            *Tensor* or *tuple[Tensor, ...]* of **attributions**:
            - **attributions** (*Tensor* or *tuple[Tensor, ...]*):
                        The gradient of the target with respect to each input through the
                        pruned network; same shape, dtype and device as the inputs, detached.
                        A tuple if the inputs were a tuple.

        Examples::

            >>> import torch, torchvision
            >>> from captum.attr import NoiseTunnel
            >>> from captum_prune import PrunedGradient
            >>> model = torchvision.models.resnet18(num_classes=5).eval()
            >>> x = torch.randn(1, 3, 32, 32)
            >>> pg = PrunedGradient(model)
            >>> a = pg.attribute(x, target=2, sparsity=0.9)
            >>> smooth = NoiseTunnel(pg).attribute(x, nt_samples=4, stdevs=0.1, target=2)
            >>> a.shape == smooth.shape == x.shape
            True
        """
        options = PruningOptions(
            sparsity=sparsity, criterion=criterion, selection=selection, threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )
        (gradients, _), = self._run(
            inputs, target, additional_forward_args, [options], want_pathway=False
        )
        return format_output(is_tuple(inputs), gradients)

    def pathway(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
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
        r"""The critical pathway that :meth:`attribute` would use, for inspection.

        Takes the same arguments as :meth:`attribute`.

        Returns:
            :class:`~captum_prune.Pathway`: the keep-mask, score and activation of every
            neuron per layer call, the kept fraction per example and per layer, and the
            model's output with and without pruning.

        Examples::

            >>> import torch, torchvision
            >>> from captum_prune import PrunedGradient
            >>> model = torchvision.models.resnet18(num_classes=10).eval()
            >>> x = torch.randn(2, 3, 64, 64)
            >>> path = PrunedGradient(model).pathway(x, target=1, sparsity=0.9)
            >>> len(path.layer_names)  # 17 ReLU calls from 9 ReLU modules
            17
            >>> [round(f, 2) for f in path.kept_fraction.tolist()]
            [0.1, 0.1]
        """
        options = PruningOptions(
            sparsity=sparsity, criterion=criterion, selection=selection, threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )
        (_, found), = self._run(
            inputs, target, additional_forward_args, [options], want_pathway=True
        )
        assert found is not None
        return found

    def sweep(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        sparsities: Sequence[Union[float, str]] = (0.0, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99),
        return_pathways: bool = False,
        criterion: str = "taylor",
        selection: str = "global",
        threshold: str = "reference",
        n_steps: int = 10,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        output_change: float = DEFAULT_OUTPUT_CHANGE,
        probability: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> Any:
        r"""The attribution at several sparsities from one scoring pass.

        Costs one scoring pass plus, per entry of ``sparsities``, one selection and one pass
        through its pruned network (and for ``"auto"`` its bisection). Each entry's result is
        bit for bit what :meth:`attribute` (or, with ``return_pathways``, :meth:`pathway`)
        returns for that sparsity: the same scoring, selection and pruned pass run, only the
        scoring is shared. (With ``criterion="random"`` that means one draw of scores for all
        entries, as separate calls each started from the same random state would get.)

        Args:

            inputs, target, additional_forward_args: As in :meth:`attribute`.
            sparsities (sequence, optional): The sparsities: fractions in ``[0, 1)``,
                        ``"auto"``, or per-example tensors, in any order (repeats allowed).
                        Default: the paper's sweep, 0, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99.
            return_pathways (bool, optional): Also return each entry's
                        :class:`~captum_prune.Pathway` (they share one ``scores`` and
                        ``activations`` list; the masks are each entry's own).
                        Default: False
            criterion (str, optional): As in :meth:`attribute`; likewise ``selection``,
                        ``threshold``, ``n_steps``, ``method``, ``internal_batch_size``,
                        ``output_change`` and ``probability``, the same for every entry.

        Returns:
            A list with one attribution per entry (each as :meth:`attribute` returns it);
            with ``return_pathways=True`` the tuple ``(attributions, pathways)``.

        Examples::

            >>> import torch, torchvision
            >>> from captum_prune import PrunedGradient
            >>> model = torchvision.models.resnet18(num_classes=10).eval()
            >>> x = torch.randn(2, 3, 32, 32)
            >>> pg = PrunedGradient(model)
            >>> maps = pg.sweep(x, target=[3, 7], sparsities=[0.7, 0.9, 0.99])
            >>> len(maps), torch.equal(maps[1], pg.attribute(x, target=[3, 7], sparsity=0.9))
            (3, True)
            >>> maps, paths = pg.sweep(x, target=3, sparsities=[0.9, "auto"],
            ...                        return_pathways=True)
            >>> paths[0].sparsity
            tensor([0.9000, 0.9000], dtype=torch.float64)
        """
        if isinstance(sparsities, (str, bytes, Tensor)) or not hasattr(sparsities, "__iter__"):
            raise ValueError(
                f"sparsities: expected a sequence of sparsities (numbers in [0, 1), 'auto' or "
                f"per-example tensors), got {sparsities!r}")
        entries = list(sparsities)
        if not entries:
            raise ValueError("sparsities: must not be empty")
        if not isinstance(return_pathways, bool):
            raise TypeError(
                f"return_pathways: expected a bool, got {type(return_pathways).__name__}")
        shared = PruningOptions(
            sparsity=DEFAULT_SPARSITY, criterion=criterion, selection=selection,
            threshold=threshold,
            n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
            output_change=output_change, probability=probability,
        )
        every = []
        for position, entry in enumerate(entries):
            try:
                every.append(replace(shared, sparsity=entry))
            except (TypeError, ValueError) as error:
                raise type(error)(f"sparsities[{position}]: {error}") from None
        results = self._run(
            inputs, target, additional_forward_args, every, want_pathway=return_pathways
        )
        maps = [format_output(is_tuple(inputs), gradients) for gradients, _ in results]
        if not return_pathways:
            return maps
        return maps, [found for _, found in results]

    # ------------------------------------------------------------------ internals

    def _run(
        self,
        inputs: Any,
        target: TargetType,
        additional_forward_args: Any,
        every: List[PruningOptions],
        want_pathway: bool,
    ) -> List[Tuple[Tuple[Tensor, ...], Optional[Pathway]]]:
        r"""The three steps of the engine (:mod:`captum_prune._engine`) for the target: one
        scoring pass, then a selection and a pruned pass for each of ``every`` (options that
        differ only in their sparsity)."""
        with _engine.session(
            self.forward_func, self.layers, self.layer_names, self.batch_dims, inputs,
            _engine.TargetObjective(target), additional_forward_args,
        ) as run:
            scored = _engine.score(run, every[0], keep_activations=want_pathway)
            selected = [_auto.select(run, scored, options) for options in every]
            scores = scored.scores if want_pathway else None
            # Free scores and activations (which may share memory) before pass 2.
            scored.scores = []
            if not want_pathway:
                scored.activations.clear()
            passes = []
            for options, (masks, _) in zip(every, selected):
                pruned = _engine.pruned_pass(run, scored.calls, masks)
                if isinstance(options.sparsity, str):  # "auto"
                    _auto.check_bound(pruned.output, scored, run, options)
                passes.append(pruned)
        results = []
        for (masks, sparsity), pruned in zip(selected, passes):
            _warn_if_empty(pruned.gradients)
            found = None
            if want_pathway:
                found = Pathway(
                    layer_names=scored.call_names,
                    masks=masks,
                    scores=scores,
                    activations=scored.activations,
                    original_output=scored.output,
                    pruned_output=pruned.output,
                    original_target=scored.target_values,
                    pruned_target=pruned.values,
                    sparsity=sparsity,
                )
            results.append((pruned.gradients, found))
        return results


def _warn_if_empty(gradients: Tuple[Tensor, ...]) -> None:
    empty = _cpu.zero_rows(gradients)
    if empty:
        _safety.warn(
            f"PrunedGradient: the pruned network no longer depends on the input for "
            f"example(s) {empty[:10]}{'...' if len(empty) > 10 else ''}, so their attribution "
            "is all zeros; lower the sparsity.",
            _safety.EmptyAttributionWarning,
        )
