r"""Control methods: attributions that carry no information, to calibrate every protocol.

A method that does not beat :class:`RandomAttribution` on a protocol has shown nothing on it.
"""

from typing import Any, Tuple, Union

import torch
from captum.attr import Attribution
from torch import Tensor


class RandomAttribution(Attribution):
    r"""
    Random-map control: uniform noise in :math:`[0, 1)` of the shape of the inputs,
    independent of the model, the input values and the target.

    The maps come from a private ``torch.Generator`` seeded at construction (the global RNG is
    neither used nor changed), so a sequence of calls is reproducible from the seed. Each call
    draws the next maps of that stream; a fresh instance with the same seed draws the same
    maps again. In :func:`~captum_prune.evaluation.cascading_randomization` and the other
    randomisation checks, which build one instance per model state, the control therefore
    gives the same map for every state: a map that does not depend on the model, which such a
    check should fail. The class itself is such a factory (seed 0); for another seed pass
    ``lambda m: RandomAttribution(m, seed=1)``.

    Expected results: 0 in expectation for SRG; chance (:math:`1/n^2`) in the grid pointing
    game; the random-ordering curve in LeRF/MoRF, ROAR and ROAD.

    Args:

        forward_func (callable or nn.Module): The model (kept for Captum compatibility; it is
                    never called).
        seed (int, optional): Seed of the maps. Default: 0

    Examples::

        >>> import torch
        >>> from captum_prune.evaluation import RandomAttribution
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> control = RandomAttribution(model, seed=3)
        >>> maps = control.attribute(torch.zeros(2, 3, 2, 2), target=1)
        >>> maps.shape, bool(((maps >= 0) & (maps < 1)).all())
        (torch.Size([2, 3, 2, 2]), True)
        >>> torch.equal(maps, RandomAttribution(model, seed=3).attribute(torch.ones(2, 3, 2, 2)))
        True
    """

    def __init__(self, forward_func: Any, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        super().__init__(forward_func)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def has_convergence_delta(self) -> bool:
        return False

    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: Any = None,
        additional_forward_args: Any = None,
        **kwargs: Any,
    ) -> Union[Tensor, Tuple[Tensor, ...]]:
        r"""
        Args:

            inputs (Tensor or tuple of Tensor): Inputs; one map of the same shape, dtype and
                        device is returned per input tensor.
            target (optional): Ignored (accepted for Captum compatibility).
            additional_forward_args (optional): Ignored.
            **kwargs: Ignored, so that protocol arguments meant for other methods (e.g.
                        ``sparsity``) do not fail.

        Returns:
            Tensor (or tuple of Tensors, for tuple inputs) of uniform values in
            :math:`[0, 1)`.
        """
        as_tuple = isinstance(inputs, tuple)
        tensors = inputs if as_tuple else (inputs,)
        maps = []
        for x in tensors:
            if not isinstance(x, Tensor):
                raise TypeError(f"inputs must be tensors, got {type(x).__name__}")
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            noise = torch.rand(x.shape, generator=self._generator, dtype=torch.float64)
            maps.append(noise.to(device=x.device, dtype=dtype))
        return tuple(maps) if as_tuple else maps[0]

