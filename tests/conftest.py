"""Shared fixtures: paths of the committed Hugging Face checkpoint fixtures."""
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def tiny_hf() -> Path:
    """A 2-layer GPT-2 saved by transformers (keys with the `transformer.` prefix)."""
    return FIXTURES / "tiny-gpt2"


@pytest.fixture
def tiny_hf_noprefix() -> Path:
    """The same tensors without the prefix, plus the legacy attn.bias buffers."""
    return FIXTURES / "tiny-gpt2-noprefix"
