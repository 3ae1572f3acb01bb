"""A tiny word-level tokenizer and random-weight Hugging Face models, built offline."""
import torch

WORDS = (
    "the a cat dog sat on mat ran to park is was good bad movie film very not i liked it "
    "this that and of . , ! ?"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[CLS]", "[SEP]"]


def tiny_tokenizer():
    """A ``PreTrainedTokenizerFast`` over a fixed vocabulary (whitespace and punctuation
    split), which prepends ``[BOS]`` to every encoding with special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
        cls_token="[CLS]", sep_token="[SEP]",
    )


def tiny_gpt2(seed=0, n_layer=2):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer, n_head=2, n_embd=32, n_positions=32, vocab_size=len(SPECIAL + WORDS),
        bos_token_id=2, eos_token_id=2, pad_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_bert(seed=0, num_labels=2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64,
        vocab_size=len(SPECIAL + WORDS), max_position_embeddings=32, num_labels=num_labels,
        pad_token_id=0,
    )
    return BertForSequenceClassification(config).eval()


class NextTokenLogits(torch.nn.Module):
    """A causal LM's logits of the next token, ``(N, V)``: a classifier over the vocabulary.

    With ``embeds=True`` it takes the token embeddings (``inputs_embeds``) instead of ids."""

    def __init__(self, model, embeds=False):
        super().__init__()
        self.model = model
        self.embeds = embeds

    def forward(self, x):
        if self.embeds:
            return self.model(inputs_embeds=x).logits[:, -1]
        return self.model(x).logits[:, -1]


class ClassifierLogits(torch.nn.Module):
    """A sequence classifier's logits from token ids and an attention mask."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, attention_mask=None):
        return self.model(ids, attention_mask=attention_mask).logits
