r"""Draws the figure of the "Text and language models" page (docs/_static/text/llm_token_attr.png).

Run from the repository root (needs the ``text`` and ``demo`` extras; nothing is downloaded)::

    python docs/text_figure.py

It runs the page's language-model example (a random-weight GPT-2 and a word-level tokenizer
built in place) and saves Captum's ``LLMAttributionResult.plot_token_attr()``.
"""
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import torch  # noqa: E402
from captum.attr import LLMGradientAttribution, TextTokenInput  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from captum_prune import LayerPrunedGradient  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_static", "text",
                   "llm_token_attr.png")


def main() -> None:
    torch.manual_seed(0)
    words = "[UNK] [BOS] the a cat dog sat on mat ran to park".split()
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", bos_token="[BOS]"
    )
    model = GPT2LMHeadModel(GPT2Config(
        n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=len(words),
        bos_token_id=1, eos_token_id=1,
    )).eval()
    llm = LLMGradientAttribution(LayerPrunedGradient(model, model.transformer.wte), tokenizer)
    result = llm.attribute(
        TextTokenInput("the cat sat", tokenizer, skip_tokens=["[BOS]"]),
        target="on the mat", sparsity=0.85,
    )
    fig, ax = result.plot_token_attr(show=False)
    ax.set_xlabel("LayerPrunedGradient, sparsity 0.85, random GPT-2")
    fig.set_size_inches(5.5, 3.4)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
