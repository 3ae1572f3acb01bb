"""Fixtures of the text tests (each test module skips itself without ``transformers``);
nothing is downloaded."""
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
from tests.text._tiny import tiny_bert, tiny_gpt2, tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def gpt2():
    return tiny_gpt2()


@pytest.fixture(scope="session")
def bert():
    return tiny_bert()
