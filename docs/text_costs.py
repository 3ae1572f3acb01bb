r"""The cost of LayerPrunedGradient against Captum's layer methods on random-weight transformers.

Run from the repository root (needs the ``text`` extra; nothing is downloaded)::

    python docs/text_costs.py            # GPT-2 and BERT, 1 thread, 15 rounds
    python docs/text_costs.py --rounds 5 --threads 2

Each round calls every method once on the same model and inputs, in turn (round robin in one
process, so that load changes hit all methods alike); the table gives the median time per call
and its ratio to ``LayerGradientXActivation``, and the same for the fastest call (less
sensitive to other processes on a busy machine). The models: a GPT-2 language model (2 layers,
2 heads, width 64) attributed at its token embeddings for the next-token logit, and a BERT
classifier of the same size attributed at its embeddings (with an attention mask); batch 4,
32 tokens.
"""
import argparse
import os
import statistics
import sys
import time
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from captum_prune import LayerPrunedGradient  # noqa: E402

VOCAB, WIDTH, LAYERS, BATCH, TOKENS = 1000, 64, 2, 4, 32


class NextToken(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(ids).logits[:, -1]


class Classifier(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, attention_mask):
        return self.model(ids, attention_mask=attention_mask).logits


def models():
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(
        n_layer=LAYERS, n_head=2, n_embd=WIDTH, n_positions=TOKENS, vocab_size=VOCAB,
        bos_token_id=0, eos_token_id=0,
    )).eval()
    bert = BertForSequenceClassification(BertConfig(
        num_hidden_layers=LAYERS, num_attention_heads=2, hidden_size=WIDTH,
        intermediate_size=4 * WIDTH, vocab_size=VOCAB, max_position_embeddings=TOKENS,
        num_labels=2,
    )).eval()
    ids = torch.randint(1, VOCAB, (BATCH, TOKENS))
    mask = torch.ones_like(ids)
    return [
        ("GPT-2, next token", NextToken(gpt2), gpt2.transformer.wte, ids, 7, None),
        ("BERT classifier", Classifier(bert), bert.bert.embeddings, ids, 1, mask),
    ]


def methods(forward, layer):
    lgxa = LayerGradientXActivation(forward, layer)
    lig = LayerIntegratedGradients(forward, layer)
    lpg = LayerPrunedGradient(forward, layer)
    return [
        ("LayerGradientXActivation", lambda x, t, a: lgxa.attribute(x, t, a)),
        ("LayerPrunedGradient (0.85)", lambda x, t, a: lpg.attribute(x, t, a, sparsity=0.85)),
        ("LayerIntegratedGradients (50)", lambda x, t, a: lig.attribute(
            x, target=t, additional_forward_args=a, n_steps=50)),
    ]


def measure(rounds: int):
    rows = []
    for model_name, forward, layer, ids, target, extra in models():
        calls = methods(forward, layer)
        times = {name: [] for name, _ in calls}
        for round_ in range(rounds + 1):
            for name, call in calls:
                start = time.perf_counter()
                call(ids, target, extra)
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        base = statistics.median(times[calls[0][0]])
        fastest = min(times[calls[0][0]])
        for name, _ in calls:
            median, best = statistics.median(times[name]), min(times[name])
            rows.append((model_name, name, median * 1e3, median / base, best * 1e3,
                         best / fastest))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, "
          f"batch {BATCH} x {TOKENS} tokens, width {WIDTH}, {LAYERS} layers")
    print(f"{'model':<20} {'method':<31} {'median ms':>9} {'x LGXA':>7} {'min ms':>8} "
          f"{'x LGXA':>7}")
    for model_name, name, ms, ratio, best, best_ratio in measure(args.rounds):
        print(f"{model_name:<20} {name:<31} {ms:9.2f} {ratio:7.2f} {best:8.2f} "
              f"{best_ratio:7.2f}")


if __name__ == "__main__":
    main()
