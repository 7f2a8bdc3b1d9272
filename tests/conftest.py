"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.student.base_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random model: pass it anywhere a base-model spec goes (its output is garbage).

    The tokenizer comes from the cached bundled model; on a cold cache the first build converts the GGUF once.
    """
    return build_tiny_model(tmp_path_factory.mktemp("tiny_base_model"))
