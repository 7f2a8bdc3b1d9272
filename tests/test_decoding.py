"""Prompt building, the strict parser, and both decoders, driven by the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tools.core.prompting import render_system_prompt
from tools.core.schema import DIMS, ParamVector
from tools.student.base_model import load_base
from tools.student.decoding import (
    SKELETON_MEMO_BATCHES,
    SkeletonMemo,
    SkeletonTokens,
    StrictParseError,
    parse_strict,
    predict_batch,
    predict_one,
    prompt_ids,
    ruled_out,
    skeleton_distributions,
)
from tools.student.generative import GenerativeStudent

REQUESTS = [
    "A calm rainy evening piano piece for reading",
    "ENERGETIC festival dance track with brass!!!",
    "懐かしい夏祭りの夜",
    "x",
    "Write a wistful tune for a pixel harbour town.\n- style: Chip Parade\n- mood: Rooftop Sunrise " * 3,
]


@pytest.fixture(scope="module")
def tiny(tiny_base_model: Path):
    return load_base(str(tiny_base_model))


def test_prompt_is_system_prompt_then_request_then_assistant_header(tiny) -> None:
    _, tokenizer = tiny
    text = tokenizer.decode(prompt_ids(tokenizer, "rainy jazz"))
    assert text == (
        f"<|im_start|>system\n{render_system_prompt()}<|im_end|>\n"
        "<|im_start|>user\nrainy jazz<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "SmolLM" not in text  # the template's own default system prompt is never injected


@pytest.mark.parametrize("values", [[0, 0, 0, 0, 0, 0], [10, 3, 7, 10, 0, 10], [5, 10, 1, 9, 10, 1]])
def test_skeleton_answer_tokens_equal_the_plain_tokenization_of_the_json(tiny, values: list[int]) -> None:
    _, tokenizer = tiny
    answer = ParamVector.from_list(values).to_json()
    plain = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert SkeletonTokens(tokenizer).completion_ids(values) == plain


def test_skeleton_decode_is_valid_json_with_integers_in_range_for_any_input(tiny) -> None:
    model, tokenizer = tiny
    predictions = predict_batch(model, tokenizer, REQUESTS, "skeleton", batch_size=3)
    assert len(predictions) == len(REQUESTS)
    for prediction in predictions:
        assert prediction.json_valid and prediction.parse_error is None
        assert parse_strict(prediction.raw_output) == [int(v) for v in prediction.values]
        assert all(float(v).is_integer() and 0 <= v <= 10 for v in prediction.values)
        assert prediction.served_by == "model" and prediction.latency_ms > 0


def test_expected_value_decode_stays_within_the_scale(tiny) -> None:
    model, tokenizer = tiny
    for prediction in predict_batch(model, tokenizer, REQUESTS, "skeleton_ev", batch_size=2):
        assert prediction.json_valid
        assert len(prediction.values) == len(DIMS)
        assert all(0.0 <= v <= 10.0 for v in prediction.values)
        assert list(json.loads(prediction.raw_output)) == list(DIMS)


def test_value_distributions_sum_to_one_and_batching_does_not_change_them(tiny) -> None:
    model, tokenizer = tiny
    batched = skeleton_distributions(model, tokenizer, REQUESTS)
    single = torch.cat([skeleton_distributions(model, tokenizer, [r]) for r in REQUESTS])
    assert batched.shape == (len(REQUESTS), len(DIMS), 11)
    assert torch.allclose(batched.sum(dim=-1), torch.ones(len(REQUESTS), len(DIMS), dtype=batched.dtype))
    assert torch.allclose(batched, single, atol=1e-5)


def test_value_ten_is_scored_as_one_followed_by_zero(tiny) -> None:
    """Brute force without a cache: P(10) = P("1" | prefix) * P("0" | prefix + "1") among "0" and ","."""
    model, tokenizer = tiny
    tokens = SkeletonTokens(tokenizer)
    probs = skeleton_distributions(model, tokenizer, [REQUESTS[0]])[0, 0]
    sequence = prompt_ids(tokenizer, REQUESTS[0]) + tokens.pieces[0]
    with torch.inference_mode():
        digit_p = torch.softmax(model(torch.tensor([sequence])).logits[0, -1, tokens.digits].double(), -1)
        after_one = model(torch.tensor([sequence + [tokens.digits[1]]])).logits[0, -1].double()
    ten_p = torch.softmax(after_one[[tokens.digits[0], tokens.pieces[1][0]]], -1)[0]
    assert probs[10].item() == pytest.approx((digit_p[1] * ten_p).item(), abs=1e-6)
    assert probs[1].item() == pytest.approx((digit_p[1] * (1 - ten_p)).item(), abs=1e-6)
    assert probs[2].item() == pytest.approx(digit_p[2].item(), abs=1e-6)


def test_free_decoder_records_a_parse_error_for_garbage_output_and_never_repairs_it(tiny) -> None:
    model, tokenizer = tiny
    predictions = predict_batch(model, tokenizer, REQUESTS[:2], "free", batch_size=2, max_new_tokens=8)
    for prediction in predictions:
        assert prediction.json_valid is False
        assert prediction.values is None
        assert prediction.parse_error
        assert prediction.raw_output  # the text the model produced is kept


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("", False),
        ("  ", False),
        ("{", False),
        (' \n{"energy": 3', False),
        ("I'm", True),
        ("```json", True),
        (" a{", True),
    ],
)
def test_an_answer_is_ruled_out_once_it_starts_with_anything_but_a_brace(answer: str, expected: bool) -> None:
    assert ruled_out(answer) is expected
    if expected:
        with pytest.raises(StrictParseError):  # whatever would have followed
            parse_strict(
                answer
                + '{"energy":1,"warmth":1,"brightness":1,"acousticness":1,"complexity":1,"nostalgia":1}'
            )


def test_free_decoding_stops_a_row_at_the_token_that_rules_it_out(tiny) -> None:
    model, tokenizer = tiny
    (prediction,) = predict_batch(model, tokenizer, REQUESTS[:1], "free", batch_size=1, max_new_tokens=30)
    generated = tokenizer(prediction.raw_output, add_special_tokens=False)["input_ids"]
    assert ruled_out(prediction.raw_output) and len(generated) < 30
    assert not ruled_out(tokenizer.decode(generated[:-1]))  # it went on until that token, not further
    assert prediction.parse_error.endswith("(generation stopped there: no strict answer starts this way)")


def test_single_request_prediction_times_the_request(tiny) -> None:
    model, tokenizer = tiny
    prediction = predict_one(model, tokenizer, REQUESTS[0], "skeleton")
    assert prediction.json_valid and prediction.latency_ms > 0


def test_unknown_decoder_is_refused(tiny) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="unknown decoder"):
        predict_batch(model, tokenizer, ["x"], "beam")  # type: ignore[arg-type]


def test_student_wraps_the_base_model_and_serves_every_row_itself(tiny_base_model: Path) -> None:
    student = GenerativeStudent.load(str(tiny_base_model))
    assert student.name == tiny_base_model.name
    predictions = student.predict_batch(REQUESTS[:2], "skeleton")
    assert [p.served_by for p in predictions] == ["model", "model"]
    assert student.predict_one("x", "skeleton_ev").json_valid


def test_skeleton_and_its_expected_value_share_one_forward_pass_per_batch(tiny_base_model: Path) -> None:
    """A student decoding a batch with `skeleton_ev` after `skeleton` reuses the distributions: the same
    predictions as a fresh student computes, and no forward pass of the model; a new batch computes its own."""
    student = GenerativeStudent.load(str(tiny_base_model))
    fresh = GenerativeStudent.load(str(tiny_base_model))
    forwards = []
    student.model.register_forward_hook(lambda *_: forwards.append(1))
    argmax = student.predict_batch(REQUESTS, "skeleton", batch_size=2)
    after_first = len(forwards)
    expected = student.predict_batch(REQUESTS, "skeleton_ev", batch_size=2)
    assert len(forwards) == after_first > 0
    assert [p.values for p in expected] == [
        p.values for p in fresh.predict_batch(REQUESTS, "skeleton_ev", batch_size=2)
    ]
    assert [p.values for p in argmax] == [
        p.values for p in fresh.predict_batch(REQUESTS, "skeleton", batch_size=2)
    ]
    student.predict_batch(REQUESTS[:1], "skeleton_ev", batch_size=2)
    assert len(forwards) > after_first


def test_the_skeleton_memo_keeps_only_the_latest_batches() -> None:
    memo = SkeletonMemo()
    for i in range(SKELETON_MEMO_BATCHES + 2):
        memo.put((f"request {i}",), torch.full((1, 6, 11), float(i)), latency_ms=float(i))
    assert memo.get(("request 0",)) is None and memo.get(("request 1",)) is None
    distributions, latency = memo.get((f"request {SKELETON_MEMO_BATCHES + 1}",))
    assert latency == SKELETON_MEMO_BATCHES + 1 and distributions[0, 0, 0] == SKELETON_MEMO_BATCHES + 1
    assert memo.get(("request 2",)) is not None


def test_student_refuses_a_folder_that_is_not_an_adapter(tiny_base_model: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        GenerativeStudent.load(str(tiny_base_model), adapter_dir=tmp_path)


def test_strict_parser_accepts_exactly_the_six_keys_with_surrounding_whitespace() -> None:
    raw = ' \n{"energy":5,"warmth":0,"brightness":10,"acousticness":3,"complexity":7,"nostalgia":1}\n'
    assert parse_strict(raw) == [5, 0, 10, 3, 7, 1]


def test_strict_parser_accepts_any_key_order() -> None:
    raw = '{"nostalgia":1,"energy":5,"warmth":0,"brightness":10,"acousticness":3,"complexity":7}'
    assert parse_strict(raw) == [5, 0, 10, 3, 7, 1]


VALID = {"energy": 5, "warmth": 0, "brightness": 10, "acousticness": 3, "complexity": 7, "nostalgia": 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "not JSON"),
        ("The answer is 5", "not JSON"),
        ("```json\n" + json.dumps(VALID) + "\n```", "not JSON"),
        (json.dumps(VALID) + " Hope this helps!", "not JSON"),
        (json.dumps(list(VALID.values())), "expected a JSON object"),
        (json.dumps({k: v for k, v in VALID.items() if k != "warmth"}), "missing warmth"),
        (json.dumps({**VALID, "tempo": 3}), "unexpected tempo"),
        (json.dumps({**VALID, "energy": 5.5}), "energy=5.5 is not an integer"),
        (json.dumps({**VALID, "energy": 5.0}), "energy=5.0 is not an integer"),
        (json.dumps({**VALID, "energy": "5"}), "energy='5' is not an integer"),
        (json.dumps({**VALID, "energy": True}), "energy=True is not an integer"),
        (json.dumps({**VALID, "energy": None}), "energy=None is not an integer"),
        (json.dumps({**VALID, "warmth": 11}), "warmth=11 is outside 0..10"),
        (json.dumps({**VALID, "warmth": -1}), "warmth=-1 is outside 0..10"),
        ('{"energy":1,"energy":2,' + json.dumps(VALID)[1:], "duplicate keys: energy"),
    ],
)
def test_strict_parser_rejects_anything_else_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(StrictParseError, match=message):
        parse_strict(raw)
