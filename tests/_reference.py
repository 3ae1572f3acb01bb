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

        def record(module, args, out):
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

        def prune(module, args, out):
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
