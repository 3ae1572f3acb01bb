r"""
The attribution methods compared by ``captum-prune demo`` and ``captum-prune benchmark``.

Each entry of :data:`METHODS` is named after its Captum class and is a *factory*
``model -> explain``, where ``explain(inputs, target)`` returns attributions of the shape of
``inputs`` (GradCAM's single-channel map is upsampled to the input's height and width).
Factories, not bound instances, are what the evaluation protocols need: the sanity check calls
them again on each randomised copy.

Examples::

    >>> import torch
    >>> from captum_prune.cli.methods import build_methods
    >>> from captum_prune.zoo.models import build_digits_model
    >>> model = build_digits_model(seed=0).eval()
    >>> images, labels = torch.randn(2, 3, 32, 32), torch.tensor([3, 5])
    >>> factories = build_methods(["PrunedGradient", "Saliency", "GradCAM"])
    >>> sorted(factories)
    ['GradCAM', 'PrunedGradient', 'Saliency']
    >>> maps = {name: factory(model)(images, labels) for name, factory in factories.items()}
    >>> [tuple(m.shape) for m in maps.values()]
    [(2, 3, 32, 32), (2, 3, 32, 32), (2, 1, 32, 32)]
"""
import copy
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "COMPARISON_SPARSITY",
    "CONTROL",
    "METHODS",
    "DEFAULT_METHODS",
    "DEMO_METHODS",
    "MethodSpec",
    "build_methods",
    "parse_methods",
    "gradcam_layer",
]

#: The sparsity at which ``captum-prune demo`` and ``benchmark`` run PrunedGradient (their
#: ``--sparsity`` default), chosen for the embedded digits model: the lowest LeRF AUC of a
#: 0.5-0.95 sweep on 64 test images (docs: Results). The method's own default is
#: ``captum_prune.pruned_gradient.DEFAULT_SPARSITY`` (0.85, the authors' code).
COMPARISON_SPARSITY = 0.8

#: The name of the random-map control (:class:`~captum_prune.evaluation.RandomAttribution`).
CONTROL = "Random"

Explain = Callable[[Tensor, Tensor], Tensor]
Factory = Callable[[nn.Module], Explain]


@dataclass(frozen=True)
class MethodSpec:
    r"""
    One registered method.

    Attributes:
        name (str): The Captum class name (with the criterion in brackets for a
                    non-default :class:`~captum_prune.PrunedGradient` criterion).
        description (str): One line for tables and the report.
        build (callable): ``build(model, sparsity) -> explain``.
    """

    name: str
    description: str
    build: Callable[[nn.Module, float], Explain]


def _pruned_gradient(criterion: str, model: nn.Module, sparsity: float) -> Explain:
    from captum_prune import PrunedGradient

    method = PrunedGradient(model)
    return lambda x, t: method.attribute(x, target=t, sparsity=sparsity, criterion=criterion)


def _pruned_gradient_auto(model: nn.Module, sparsity: float) -> Explain:
    from captum_prune import PrunedGradient

    method = PrunedGradient(model)
    # Per example, the largest sparsity that keeps the target's probability within 15%.
    return lambda x, t: method.attribute(x, target=t, sparsity="auto")


def _plain(cls_name: str, model: nn.Module, sparsity: float) -> Explain:
    import captum.attr

    method = getattr(captum.attr, cls_name)(model)
    return lambda x, t: method.attribute(x, target=t)


def _integrated_gradients(model: nn.Module, sparsity: float) -> Explain:
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(model)
    # Zero baseline = the dataset mean for mean-normalised inputs.
    return lambda x, t: method.attribute(x, target=t, n_steps=32, internal_batch_size=512)


def _smoothgrad(model: nn.Module, sparsity: float) -> Explain:
    from captum.attr import NoiseTunnel, Saliency

    method = NoiseTunnel(Saliency(model))

    def explain(x: Tensor, t: Tensor) -> Tensor:
        # Noise of 15% of the input range, as recommended by Smilkov et al. (2017).
        sigma = 0.15 * float(x.max() - x.min()) or 0.15
        return method.attribute(
            x, target=t, nt_type="smoothgrad", nt_samples=16, stdevs=sigma, abs=False
        )

    return explain


def _relu_copy(model: nn.Module, inputs: Tensor) -> nn.Module:
    r"""
    A copy of ``model`` whose ReLUs are not in-place and each run once per forward pass.

    Captum's DeepLift and GuidedBackprop hook ``nn.ReLU`` modules; a module called twice
    (torchvision's ``BasicBlock``) or in place breaks those hooks. The user's model is
    never touched.
    """
    net = copy.deepcopy(model).eval()
    calls: Dict[nn.Module, int] = {}
    handles = []
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
            calls.setdefault(module, 0)
            handles.append(module.register_forward_hook(
                lambda m, i, o: calls.__setitem__(m, calls[m] + 1)
            ))
    try:
        with torch.no_grad():
            net(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    reused = {m: n for m, n in calls.items() if n > 1}
    if not reused:
        return net
    wrappers = {m: _PerCallReLU(n) for m, n in reused.items()}
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if child in wrappers:
                setattr(parent, name, wrappers[child])

    def reset(module: nn.Module, args: tuple) -> None:
        for wrapper in wrappers.values():
            wrapper.reset()

    net.register_forward_pre_hook(reset)
    return net


class _PerCallReLU(nn.Module):
    r"""Stands in for a reused ReLU: call ``k`` of a forward pass runs its own ``relus[k]``."""

    def __init__(self, n_calls: int) -> None:
        super().__init__()
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(n_calls))
        self._call = 0

    def reset(self) -> None:
        self._call = 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.relus[self._call % len(self.relus)](x)
        self._call += 1
        return out


def _hooked(cls_name: str, model: nn.Module, sparsity: float) -> Explain:
    import captum.attr

    cache: Dict[str, object] = {}

    def explain(x: Tensor, t: Tensor) -> Tensor:
        if "method" not in cache:
            cache["method"] = getattr(captum.attr, cls_name)(_relu_copy(model, x))
        return cache["method"].attribute(x, target=t)

    return explain


def _random(model: nn.Module, sparsity: float) -> Explain:
    from captum_prune.evaluation import RandomAttribution

    # A fresh instance per model: the same maps for every randomised copy in the sanity
    # checks (a map that ignores the model, which they should flag).
    method = RandomAttribution(model, seed=0)
    return lambda x, t: method.attribute(x, target=t)


def gradcam_layer(model: nn.Module) -> nn.Module:
    r"""
    The last convolutional block of ``model``: the top-level child that holds its last
    ``nn.Conv2d`` (``layer3`` of :class:`~captum_prune.zoo.models.DigitsResNet`, ``layer4`` of
    a torchvision ResNet, ``features`` of a VGG).

    Raises:
        ValueError: If the model has no ``nn.Conv2d``.
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last = name
    if last is None:
        raise ValueError("model: GradCAM needs a model with at least one nn.Conv2d layer")
    top = last.split(".")[0]
    return dict(model.named_children()).get(top, model) if top else model


def _gradcam(model: nn.Module, sparsity: float) -> Explain:
    from captum.attr import LayerAttribution, LayerGradCam

    method = LayerGradCam(model, gradcam_layer(model))

    def explain(x: Tensor, t: Tensor) -> Tensor:
        cam = method.attribute(x, target=t, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear").detach()

    return explain


#: Registered methods by name, in the order of tables and figures.
METHODS: Dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("PrunedGradient", "gradient through the taylor pathway",
                   partial(_pruned_gradient, "taylor")),
        MethodSpec("PrunedGradient[integrated_gradients]",
                   "gradient through the integrated-gradients pathway",
                   partial(_pruned_gradient, "integrated_gradients")),
        MethodSpec("PrunedGradient[auto]", "taylor pathway, sparsity chosen per example "
                   "(sparsity='auto': output change at most 15%)", _pruned_gradient_auto),
        MethodSpec("Saliency", "input gradient", partial(_plain, "Saliency")),
        MethodSpec("InputXGradient", "input x gradient", partial(_plain, "InputXGradient")),
        MethodSpec("IntegratedGradients", "32 steps from the mean image", _integrated_gradients),
        MethodSpec("SmoothGrad", "NoiseTunnel over Saliency, 16 samples", _smoothgrad),
        MethodSpec("GuidedBackprop", "guided backpropagation", partial(_hooked, "GuidedBackprop")),
        MethodSpec("DeepLift", "DeepLift (rescale), zero baseline", partial(_hooked, "DeepLift")),
        MethodSpec("GradCAM", "LayerGradCam on the last conv block, upsampled", _gradcam),
        MethodSpec(CONTROL, "random-map control (RandomAttribution, seed 0): uniform noise",
                   _random),
    )
}

DEFAULT_METHODS: List[str] = list(METHODS)
DEMO_METHODS: List[str] = [
    "PrunedGradient", "Saliency", "IntegratedGradients", "SmoothGrad", "GuidedBackprop", "GradCAM",
]


def parse_methods(text: Optional[str], default: Sequence[str] = DEFAULT_METHODS) -> List[str]:
    r"""
    Parses a comma-separated list of method names (case-insensitive); ``None`` or ``"all"``
    gives ``default``.

    Raises:
        ValueError: Naming the unknown methods and the known ones.
    """
    if text is None or text.strip().lower() == "all":
        return list(default)
    lookup = {name.lower(): name for name in METHODS}
    names, unknown = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() in lookup:
            if lookup[part.lower()] not in names:
                names.append(lookup[part.lower()])
        else:
            unknown.append(part)
    if unknown or not names:
        raise ValueError(
            f"methods: unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)}"
        )
    return names


def build_methods(
    names: Sequence[str], sparsity: float = COMPARISON_SPARSITY
) -> Dict[str, Factory]:
    r"""
    Factories ``model -> explain(inputs, target)`` for ``names``, in that order.

    Args:
        names (sequence of str): Keys of :data:`METHODS`.
        sparsity (float or str, optional): Pruned share of neurons for the PrunedGradient
                    methods, or ``"auto"``. Default: :data:`COMPARISON_SPARSITY` (0.8)

    Returns:
        dict: ``{name: factory}``.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"names: unknown method(s) {unknown}; choose from {list(METHODS)}")
    if sparsity != "auto" and not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) or 'auto', got {sparsity}")
    sparsity = sparsity if sparsity == "auto" else float(sparsity)
    return {n: partial(METHODS[n].build, sparsity=sparsity) for n in names}
