"""An independent, deliberately plain re-implementation of the authors' NeuronMCT semantics.

One example at a time; per-call forward hooks; gradients paired with activations by
``autograd.grad`` on the recorded outputs; scores pooled as a float64 numpy array; threshold by
``numpy.percentile``; every neuron with ``score <= tau`` set to zero (the float32 tensor is
compared with the numpy float64 scalar, as in the authors' code). Used only as a test oracle.
"""
import numpy as np
import torch


def reference_pathway_gradient(model, x, target, percentile):
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    results = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_()
        recorded = []

        def record(module, args, out, recorded=recorded):
            recorded.append(out)
            return out.clone()

        handles = [r.register_forward_hook(record) for r in relus]
        try:
            logit = model(xi)[0, target[i]]
            grads = torch.autograd.grad(logit, recorded, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        scores = [
            (a * (torch.zeros_like(a) if g is None else g)).abs().detach()
            for a, g in zip(recorded, grads)
        ]
        pooled = np.concatenate([s.flatten().numpy().astype(np.float64) for s in scores])
        tau = np.percentile(pooled, percentile)
        masks = [(s <= tau) for s in scores]  # True = pruned
        calls = [0]

        def prune(module, args, out, masks=masks, calls=calls):
            mask = masks[calls[0]]
            calls[0] += 1
            return out.masked_fill(mask, 0.0)

        handles = [r.register_forward_hook(prune) for r in relus]
        try:
            xi = x[i : i + 1].clone().requires_grad_()
            logit = model(xi)[0, target[i]]
            (grad,) = torch.autograd.grad(logit, xi)
        finally:
            for h in handles:
                h.remove()
        kept = sum(int((~m).sum()) for m in masks) / pooled.size
        results.append((grad[0], kept))
    return torch.stack([g for g, _ in results]), [k for _, k in results]


def _score_dtype(tensors):
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.promote_types(dtype, torch.float32)


def _target_sum(output, target):
    if isinstance(target, int):
        return output[:, target].sum()
    return output[torch.arange(output.shape[0]), torch.as_tensor(target)].sum()


def oracle_attribution(forward_func, layers, x, target, sparsity, batch_dims=None):
    """The method computed out of place, for any activation and any forward function.

    Our hooks run first on each layer (``prepend=True``), as the method's do; the scoring pass
    records each layer output (handing the network a copy, so that later in-place ops cannot
    change it), scores ``|a * g|`` in at least float32, prunes per example every neuron with
    ``score <= tau`` (``tau``: numpy's linear percentile of the example's pooled scores,
    rounded to the score dtype), and the pruned pass returns ``output * keep`` from the hook.
    ``batch_dims``: the batch dimension of each layer's output (default 0 for all).
    """
    dims = batch_dims or [0] * len(layers)
    recorded, owners = [], []

    def recorder(position):
        def record(module, args, out):
            recorded.append(out)
            owners.append(position)
            return out.clone()

        return record

    handles = [m.register_forward_hook(recorder(i), prepend=True) for i, m in enumerate(layers)]
    try:
        xi = x.detach().clone().requires_grad_()
        with torch.enable_grad():
            total = _target_sum(forward_func(xi), target)
            grads = torch.autograd.grad(total, recorded, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    dtype = _score_dtype(recorded)
    scores = []
    for a, g, owner in zip(recorded, grads, owners):
        a = a.detach().to(dtype)
        s = torch.zeros_like(a) if g is None else (a * g.to(dtype)).abs()
        scores.append(s.movedim(dims[owner], 0))
    n = x.shape[0]
    keeps = [torch.zeros(s.shape, dtype=torch.bool) for s in scores]
    for i in range(n):
        pooled = np.concatenate([s[i].flatten().double().numpy() for s in scores])
        tau = torch.tensor(np.percentile(pooled, 100 * sparsity), dtype=dtype)
        for keep, s in zip(keeps, scores):
            keep[i] = s[i] > tau
    keeps = [k.movedim(0, dims[o]) for k, o in zip(keeps, owners)]
    calls = [0]

    def prune(module, args, out):
        keep = keeps[calls[0]]
        calls[0] += 1
        return out * keep

    handles = [m.register_forward_hook(prune, prepend=True) for m in layers]
    try:
        xi = x.detach().clone().requires_grad_()
        with torch.enable_grad():
            total = _target_sum(forward_func(xi), target)
            (grad,) = torch.autograd.grad(total, xi, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return (torch.zeros_like(x) if grad is None else grad), keeps
