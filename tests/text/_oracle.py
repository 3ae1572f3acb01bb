"""A brute-force, out-of-place layer pathway gradient: the test oracle of the layer methods.

One example at a time; plain forward hooks; the scoring pass records each neuron layer's
output (handing the network a copy), takes ``autograd.grad`` of the objective with respect to
those recordings, scores ``|a * g|`` in float32 and prunes, per example, every neuron with
``score <= tau`` (``tau``: numpy's linear percentile of the pooled scores); the pruned pass
returns ``output * keep`` from each neuron hook and records the attributed layer's output as
the rest of the network gets it (after its own mask, if it is a neuron layer too). For a
neuron, only the calls before its layer's are pooled, and the neuron is read before any mask
of its layer. Written without any code of the package.
"""
import numpy as np
import torch


def _objective(output, target):
    if target is None:
        return output.reshape(-1).sum()
    return output[:, target].sum()


def _one_example(forward_func, neuron_layers, layer, x, target, sparsity, multiply, neuron):
    if neuron is not None:
        x = x.detach().clone().requires_grad_()
    recorded, captured, upstream = [], [], []

    def record(module, args, out):
        recorded.append(out)
        upstream.append(neuron is None or (not captured and module is not layer))
        return out.clone()

    def capture(module, args, out):
        captured.append(out)

    handles = [m.register_forward_hook(record) for m in neuron_layers]
    handles.append(layer.register_forward_hook(capture))
    try:
        out = forward_func(x)
        value = captured[0][(0,) + neuron].sum() if neuron is not None else (
            _objective(out, target)
        )
        grads = torch.autograd.grad(value, recorded, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    scores = [
        (a.detach().float() * (torch.zeros_like(a) if g is None else g).float()).abs()
        for a, g in zip(recorded, grads)
    ]
    pooled = np.concatenate(
        [s.flatten().double().numpy() for s, up in zip(scores, upstream) if up]
    )
    tau = torch.tensor(np.percentile(pooled, 100 * sparsity), dtype=torch.float32)
    keeps = [s > tau if up else torch.ones_like(s, dtype=torch.bool)
             for s, up in zip(scores, upstream)]
    calls, captured = [0], []

    def prune(module, args, out):
        keep = keeps[calls[0]]
        calls[0] += 1
        return out * keep

    def capture_raw(module, args, out):
        captured.append(out)

    # The capture hook is registered last: it records what the rest of the network gets,
    # after the layer's own mask when it is a neuron layer.
    handles = [m.register_forward_hook(prune) for m in neuron_layers]
    handles.append(layer.register_forward_hook(capture_raw))
    try:
        out = forward_func(x)
        if neuron is not None:
            value = captured[0][(0,) + neuron].sum()
            (grad,) = torch.autograd.grad(value, x, allow_unused=True)
            result = torch.zeros_like(x) if grad is None else grad
        else:
            (grad,) = torch.autograd.grad(_objective(out, target), captured[0])
            result = grad * captured[0] if multiply else grad
    finally:
        for h in handles:
            h.remove()
    return result.detach()[0], keeps


def oracle_layer_attribution(
    forward_func, neuron_layers, layer, inputs, target, sparsity, multiply=True,
    neuron=None,
):
    """``(attribution, keeps)`` of each example, stacked.

    ``target``: an int (or ``None`` for one value per example) read from the model output;
    with ``neuron`` (a tuple index into the layer output without the batch) the objective is
    that neuron of ``layer``'s output instead, and the attribution is the input gradient (the
    inputs must be floating point); otherwise it is the gradient with respect to ``layer``'s
    output, times that output when ``multiply``. A neuron's pathway is chosen among the
    neuron layer calls that run before ``layer`` returns (not ``layer``'s own call); the
    later ones cannot change the neuron and are kept.
    """
    results, all_keeps = [], []
    for i in range(inputs.shape[0]):
        result, keeps = _one_example(
            forward_func, neuron_layers, layer, inputs[i : i + 1], target, sparsity, multiply,
            neuron,
        )
        results.append(result)
        all_keeps.append(keeps)
    return torch.stack(results), all_keeps
