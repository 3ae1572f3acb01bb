"""The layer methods on Hugging Face GPT-2 and BERT with random weights (built offline)."""
import copy
import warnings

import pytest
import torch

pytest.importorskip("transformers")

from captum.attr import (  # noqa: E402
    LayerGradientXActivation,
    LLMGradientAttribution,
    NeuronGradient,
    TextTokenInput,
)

from captum_prune import (  # noqa: E402
    LayerPrunedGradient,
    NeuronPrunedGradient,
    PrunedGradient,
    find_activation_layers,
)
from tests.text._oracle import oracle_layer_attribution  # noqa: E402
from tests.text._tiny import ClassifierLogits, NextTokenLogits, tiny_gpt2  # noqa: E402

TARGET = [3, 11, 20]


@pytest.fixture(scope="module")
def ids():
    torch.manual_seed(2)
    return torch.randint(5, 30, (3, 6))


def _acts(gpt2):
    return [block.mlp.act for block in gpt2.transformer.h]


def test_default_neurons_are_the_mlp_activations_per_token(gpt2, bert):
    assert [n for n, _ in find_activation_layers(gpt2)] == [
        "transformer.h.0.mlp.act", "transformer.h.1.mlp.act"
    ]  # NewGELUActivation (tanh GELU); attention modules are not neurons
    assert [type(m).__name__ for _, m in find_activation_layers(bert)] == [
        "GELUActivation", "GELUActivation", "Tanh"  # the MLPs and the pooler
    ]
    embeds = gpt2.transformer.wte(torch.randint(5, 30, (2, 5))).detach()
    path = PrunedGradient(NextTokenLogits(gpt2, embeds=True)).pathway(
        embeds, target=4, sparsity=0.8, threshold="exact"
    )
    assert path.layer_names == [
        "model.transformer.h.0.mlp.act#0", "model.transformer.h.1.mlp.act#0"
    ]
    assert path.masks[0].shape == (2, 5, 128)  # one neuron per token and MLP unit
    assert torch.allclose(path.kept_fraction, torch.full((2,), 0.2))


@pytest.mark.parametrize("multiply", [True, False])
def test_sparsity_zero_equals_layer_gradient_x_activation(gpt2, bert, ids, multiply):
    lm = NextTokenLogits(gpt2)
    for layer in (gpt2.transformer.wte, gpt2.transformer.h[1], [gpt2.transformer.wte,
                                                                 gpt2.transformer.ln_f]):
        ours = LayerPrunedGradient(lm, layer, multiply_by_inputs=multiply).attribute(
            ids, target=TARGET, sparsity=0.0
        )
        theirs = LayerGradientXActivation(lm, layer, multiply_by_inputs=multiply).attribute(
            ids, target=TARGET
        )
        for a, b in zip(*((t if isinstance(t, list) else [t]) for t in (ours, theirs))):
            torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-7)
    classifier = ClassifierLogits(bert)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    ours = LayerPrunedGradient(
        classifier, bert.bert.embeddings, multiply_by_inputs=multiply
    ).attribute(ids, target=1, additional_forward_args=mask, sparsity=0.0)
    theirs = LayerGradientXActivation(
        classifier, bert.bert.embeddings, multiply_by_inputs=multiply
    ).attribute(ids, target=1, additional_forward_args=mask)
    torch.testing.assert_close(ours, theirs.detach(), rtol=0, atol=1e-7)


def test_equals_brute_force_out_of_place_computation(gpt2, ids):
    """On a random GPT-2: at the embeddings (before every neuron), at a block output (after
    some) and at an MLP activation (a neuron layer itself, whose pruned units get zero)."""
    lm = NextTokenLogits(gpt2)
    for layer in (gpt2.transformer.wte, gpt2.transformer.h[0], gpt2.transformer.h[1].mlp.act):
        for multiply in (True, False):
            ours = LayerPrunedGradient(lm, layer, multiply_by_inputs=multiply).attribute(
                ids, target=TARGET, sparsity=0.7
            )
            oracle = torch.cat([
                oracle_layer_attribution(
                    lm, _acts(gpt2), layer, ids[i : i + 1], t, 0.7, multiply=multiply
                )[0]
                for i, t in enumerate(TARGET)
            ])
            torch.testing.assert_close(ours, oracle, rtol=1e-5, atol=1e-7)
            plain = LayerGradientXActivation(lm, layer, multiply_by_inputs=multiply).attribute(
                ids, target=TARGET
            )
            assert not torch.allclose(ours, plain.detach())
    act = LayerPrunedGradient(lm, gpt2.transformer.h[1].mlp.act).attribute(
        ids, target=TARGET, sparsity=0.7
    )
    assert 0.6 < float((act == 0).float().mean()) < 0.95  # its own pruned units


def _per_token_reference(gpt2, tokenizer, prompt_ids, target_ids, keep, **options):
    """The layer method called token by token: the log-probability of each target token
    given the prompt and the target tokens before it."""

    class LogProb(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model(ids).logits[:, -1].log_softmax(-1)

    method = LayerPrunedGradient(LogProb(gpt2), gpt2.transformer.wte)
    rows = []
    for i, token in enumerate(target_ids.tolist()):
        ids = torch.cat([prompt_ids, target_ids[:i]]).unsqueeze(0)
        attribution = method.attribute(ids, target=token, **options).sum(-1)[0]
        rows.append(attribution[: prompt_ids.numel()][keep])
    return torch.stack(rows)


@pytest.mark.parametrize("skip", [None, ["[BOS]"]])
def test_llm_gradient_attribution_token_by_token(gpt2, tokenizer, skip):
    method = LayerPrunedGradient(gpt2, gpt2.transformer.wte)
    original = copy.copy(method.__dict__)
    llm = LLMGradientAttribution(method, tokenizer)
    inp = TextTokenInput("the cat sat", tokenizer, skip_tokens=skip)
    result = llm.attribute(inp, target="on the mat", sparsity=0.6)
    assert method.__dict__ == original  # LLMGradientAttribution works on a copy
    assert result.token_attr.shape == (3, 3 if skip else 4)
    assert result.output_tokens == ["on", "the", "mat"]
    prompt = tokenizer.encode("the cat sat", return_tensors="pt")[0]
    keep = slice(1, None) if skip else slice(None)
    expected = _per_token_reference(
        gpt2, tokenizer, prompt, torch.tensor(tokenizer.encode("on the mat",
                                                               add_special_tokens=False)),
        keep, sparsity=0.6,
    )
    torch.testing.assert_close(result.token_attr, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result.seq_attr, expected.sum(0), rtol=1e-5, atol=1e-6)
    plain = LLMGradientAttribution(
        LayerGradientXActivation(gpt2, gpt2.transformer.wte), tokenizer
    ).attribute(inp, target="on the mat")
    assert not torch.allclose(result.token_attr, plain.token_attr)
    same = llm.attribute(inp, target="on the mat", sparsity=0.0)
    torch.testing.assert_close(same.token_attr, plain.token_attr, rtol=0, atol=1e-7)


def test_neuron_of_a_transformer(gpt2):
    torch.manual_seed(3)
    embeds = gpt2.transformer.wte(torch.randint(5, 30, (2, 5))).detach()
    lm = NextTokenLogits(gpt2, embeds=True)
    layer = gpt2.transformer.h[1].mlp.act
    neuron = (3, 17)  # token 3, MLP unit 17
    npg = NeuronPrunedGradient(lm, layer)
    with warnings.catch_warnings():  # Captum's: it sets requires_grad on the input itself
        warnings.simplefilter("ignore")
        plain = NeuronGradient(lm, layer).attribute(embeds.clone(), neuron)
    ours = npg.attribute(embeds, neuron, sparsity=0.0)
    torch.testing.assert_close(ours, plain, rtol=0, atol=1e-7)
    ours = npg.attribute(embeds, neuron, sparsity=0.7)
    oracle, _ = oracle_layer_attribution(lm, _acts(gpt2), layer, embeds, None, 0.7, neuron=neuron)
    torch.testing.assert_close(ours, oracle, rtol=1e-5, atol=1e-7)
    path = npg.pathway(embeds, neuron, sparsity=0.7)
    assert path.layer_names == ["model.transformer.h.0.mlp.act#0"]
    assert path.original_target.shape == (2,)


def _state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(m.training, len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def test_nothing_changes_and_clear_errors(gpt2, tokenizer, ids):
    before, ids_before = _state(gpt2), ids.clone()
    lm = NextTokenLogits(gpt2)
    LayerPrunedGradient(lm, gpt2.transformer.wte).attribute(ids, target=TARGET, sparsity=0.9)
    LLMGradientAttribution(LayerPrunedGradient(gpt2, gpt2.transformer.wte), tokenizer).attribute(
        TextTokenInput("a dog ran", tokenizer), target="to the park"
    )
    with pytest.raises(RuntimeError, match="'model.transformer.wte' was never called"):
        LayerPrunedGradient(NextTokenLogits(gpt2, embeds=True), gpt2.transformer.wte).attribute(
            gpt2.transformer.wte(ids).detach(), target=1
        )
    after = _state(gpt2)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:] and torch.equal(ids, ids_before)
    other = tiny_gpt2(seed=1, n_layer=1)
    with pytest.raises(ValueError, match="not a submodule"):
        LayerPrunedGradient(lm, other.transformer.wte)
    with pytest.raises(TypeError, match="floating-point inputs"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        NeuronPrunedGradient(lm, gpt2.transformer.h[1].mlp.act).attribute(ids, (0, 0))
    # Frozen weights: the embedding of token ids needs no gradient of its own.
    frozen = tiny_gpt2(seed=4, n_layer=1).requires_grad_(False)
    out = LayerPrunedGradient(NextTokenLogits(frozen), frozen.transformer.wte).attribute(
        ids, target=TARGET, sparsity=0.5
    )
    assert out.shape == (3, 6, 32) and bool((out != 0).any())
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize(
    "activation, kind",
    [("gelu_pytorch_tanh", {"GELUTanh", "PytorchGELUTanh"}), ("silu", {"SiLUActivation", "SiLU"}),
     ("gelu", {"GELUActivation"}), ("swish", {"SiLU"})],
)  # (class names differ between transformers versions)
def test_gelu_and_silu_mlps_are_neurons(ids, activation, kind):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(5)
    model = GPT2LMHeadModel(GPT2Config(
        n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=40,
        activation_function=activation,
    )).eval()
    found = find_activation_layers(model)
    assert len(found) == 1 and type(found[0][1]).__name__ in kind
    lm = NextTokenLogits(model)
    ours = LayerPrunedGradient(lm, model.transformer.wte).attribute(ids, TARGET, sparsity=0.0)
    theirs = LayerGradientXActivation(lm, model.transformer.wte).attribute(ids, TARGET)
    torch.testing.assert_close(ours, theirs.detach(), rtol=0, atol=1e-7)
    pruned = LayerPrunedGradient(lm, model.transformer.wte).attribute(
        ids, TARGET, sparsity=0.8, grad_kwargs={"retain_graph": False}
    )
    oracle = torch.cat([
        oracle_layer_attribution(lm, [found[0][1]], model.transformer.wte, ids[i : i + 1], t,
                                 0.8)[0]
        for i, t in enumerate(TARGET)
    ])
    torch.testing.assert_close(pruned, oracle, rtol=1e-5, atol=1e-7)
