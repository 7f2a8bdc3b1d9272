"""From a request to a `Prediction`: the prompt, and the two decoders.

- `free`: greedy generation, then strict JSON parsing (exactly the six keys, ints 0..10). A parse
  failure is recorded (`json_valid=False`, `parse_error`, `values=None`) and never repaired. A row stops
  generating at the token that rules a strict answer out (anything but "{" first).
- `skeleton` / `skeleton_ev`: the JSON skeleton (`{"energy":`, `,"warmth":`, ...) is prefilled and only
  the six values are decoded, over the values 0..10 only, so the output is valid JSON by construction.
  `skeleton` takes the most probable value, `skeleton_ev` the probability-weighted mean.

"10" is two tokens ("1", "0"). Each decoding step feeds the previous value, the next skeleton piece and a
speculative "1": the logits at the piece's last token give P(digit), the logits at the speculative "1"
give P("0" | "1") against the token that would follow a finished value. So P(10) = P("1")·P("0" | "1") and
P(1) = P("1")·(1 − P("0" | "1")), both from the same forward; the speculative token is then cropped
from the KV cache. The prompt is processed once per row, six forwards per batch in all.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from tools.core.prompting import render_system_prompt
from tools.core.schema import DIMS, SCALE_MAX, SCALE_MIN, ParamVector, Prediction

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GenerativeDecoder = Literal["free", "skeleton", "skeleton_ev"]
GENERATIVE_DECODERS: tuple[str, ...] = ("free", "skeleton", "skeleton_ev")
SKELETON_MEMO_BATCHES = 32  # batches a student remembers the skeleton distributions of
MAX_NEW_TOKENS = 40  # the longest valid answer (all six values "10") is 36 tokens + end of turn
VALUES = list(range(SCALE_MIN, SCALE_MAX + 1))


class StrictParseError(ValueError):
    """The model's text is not exactly the six-key JSON object of ints 0..10."""


def build_messages(request_text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": render_system_prompt()},
        {"role": "user", "content": request_text},
    ]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, request_text: str) -> list[int]:
    """Chat-template tokens of system + user turns, ending with the assistant header."""
    encoded = tokenizer.apply_chat_template(
        build_messages(request_text), add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def _text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class SkeletonTokens:
    """Token ids of the JSON skeleton pieces and the value digits, checked against the tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.pieces: list[list[int]] = [
            _text_ids(tokenizer, ("{" if i == 0 else ",") + f'"{dim}":') for i, dim in enumerate(DIMS)
        ]
        self.closing: list[int] = _text_ids(tokenizer, "}")
        self.digits: list[int] = []
        for digit in "0123456789":
            ids = _text_ids(tokenizer, digit)
            if len(ids) != 1:
                raise ValueError(f"tokenizer splits digit {digit!r} into {ids}; skeleton decoding needs one")
            self.digits.append(ids[0])
        self.end_of_turn: list[int] = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def value_ids(self, value: int) -> list[int]:
        return [self.digits[int(c)] for c in str(value)]

    def after_value(self, index: int) -> list[int]:
        """What follows value `index`: the next piece, or the closing brace after the last one."""
        return self.pieces[index + 1] if index + 1 < len(DIMS) else self.closing

    def completion_ids(self, values: Sequence[int]) -> list[int]:
        """The assistant answer for `values` token by token, exactly as the skeleton decoder sees it."""
        ids: list[int] = []
        for index, value in enumerate(values):
            ids += self.pieces[index] + self.value_ids(value)
        return ids + self.closing + self.end_of_turn


def parse_strict(raw: str) -> list[int]:
    """The six values of a strict answer, else StrictParseError saying what is wrong (whitespace trimmed)."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise StrictParseError(f"duplicate keys: {', '.join(duplicated)}")
        return dict(pairs)

    try:
        obj = json.loads(raw.strip(), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise StrictParseError(f"not JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(obj, dict):
        raise StrictParseError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [d for d in DIMS if d not in obj]
    extra = sorted(k for k in obj if k not in DIMS)
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise StrictParseError("; ".join(parts))
    values: list[int] = []
    for dim in DIMS:
        value = obj[dim]
        if isinstance(value, bool) or not isinstance(value, int):
            raise StrictParseError(f"{dim}={value!r} is not an integer")
        if not SCALE_MIN <= value <= SCALE_MAX:
            raise StrictParseError(f"{dim}={value} is outside {SCALE_MIN}..{SCALE_MAX}")
        values.append(value)
    return values


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@torch.inference_mode()
def skeleton_distributions(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> torch.Tensor:
    """P(value) for each row, dim and value 0..10: shape (len(texts), 6, 11), rows summing to 1.

    One batch (left padded, explicit position ids). Later dims are conditioned on the argmax of earlier ones.
    """
    from transformers import DynamicCache

    tokens = SkeletonTokens(tokenizer)
    pad_id = _pad_id(tokenizer)
    one = tokens.digits[1]
    zero = tokens.digits[0]
    n = len(texts)
    probs = torch.zeros((n, len(DIMS), len(VALUES)), dtype=torch.float64)
    cache = DynamicCache()
    full_mask = torch.zeros((n, 0), dtype=torch.long)
    next_position = torch.zeros(n, dtype=torch.long)
    chosen: list[list[int]] = [[] for _ in range(n)]  # value tokens to feed before the next piece

    for index in range(len(DIMS)):
        piece = tokens.pieces[index]
        if index == 0:
            rows = [prompt_ids(tokenizer, t) + piece + [one] for t in texts]
        else:
            rows = [value_ids + piece + [one] for value_ids in chosen]
        step_ids, step_mask = _left_pad(rows, pad_id)
        positions = (next_position[:, None] + step_mask.cumsum(dim=1) - 1).clamp(min=0)
        full_mask = torch.cat([full_mask, step_mask], dim=1)
        out = model(
            input_ids=step_ids,
            attention_mask=full_mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=2,
        )
        logits = out.logits.double()  # [:, 0] = after the piece, [:, 1] = after the speculative "1"
        digit_p = torch.softmax(logits[:, 0, tokens.digits], dim=-1)
        follower = tokens.after_value(index)[0]
        ten_p = torch.softmax(logits[:, 1, [zero, follower]], dim=-1)[:, 0]
        probs[:, index, :10] = digit_p
        probs[:, index, 1] = digit_p[:, 1] * (1 - ten_p)
        probs[:, index, 10] = digit_p[:, 1] * ten_p

        # drop the speculative "1" from cache and mask; positions advance over the real tokens kept
        cache.crop(-1)
        full_mask = full_mask[:, :-1]
        next_position = next_position + step_mask[:, :-1].sum(dim=1)
        best = probs[:, index].argmax(dim=-1).tolist()
        chosen = [tokens.value_ids(v) for v in best]
    return probs


def _batches(texts: Sequence[str], batch_size: int):
    for start in range(0, len(texts), batch_size):
        yield list(texts[start : start + batch_size])


class SkeletonMemo:
    """The skeleton distributions of the last `SKELETON_MEMO_BATCHES` batches a student decoded, with the
    per-row latency of computing them, by the batch's texts (safe to share between serving threads)."""

    def __init__(self) -> None:
        self._batches: OrderedDict[tuple[str, ...], tuple[torch.Tensor, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, texts: tuple[str, ...]) -> tuple[torch.Tensor, float] | None:
        with self._lock:
            return self._batches.get(texts)

    def put(self, texts: tuple[str, ...], distributions: torch.Tensor, latency_ms: float) -> None:
        with self._lock:
            self._batches[texts] = (distributions, latency_ms)
            while len(self._batches) > SKELETON_MEMO_BATCHES:
                self._batches.popitem(last=False)


def _skeleton_predictions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    decoder: str,
    memo: SkeletonMemo | None = None,
) -> list[Prediction]:
    """`skeleton` and `skeleton_ev` read the same distributions: with a `memo`, a batch already decoded by
    one of them is not computed again for the other (same model, same batch: the same numbers)."""
    key = tuple(texts)
    remembered = memo.get(key) if memo is not None else None
    if remembered is not None:
        probs, latency = remembered
    else:
        started = time.perf_counter()
        probs = skeleton_distributions(model, tokenizer, texts)
        latency = (time.perf_counter() - started) * 1000 / len(texts)
        if memo is not None:
            memo.put(key, probs, latency)
    predictions = []
    for row in probs:
        if decoder == "skeleton_ev":
            values = (row * torch.arange(len(VALUES), dtype=row.dtype)).sum(dim=-1).tolist()
            raw = "{" + ",".join(f'"{d}":{v:.4f}' for d, v in zip(DIMS, values, strict=True)) + "}"
        else:
            ints = row.argmax(dim=-1).tolist()
            values = [float(v) for v in ints]
            raw = ParamVector.from_list(ints).to_json()
        predictions.append(Prediction(values=values, raw_output=raw, json_valid=True, latency_ms=latency))
    return predictions


def ruled_out(answer_so_far: str) -> bool:
    """No continuation of this text can be a strict answer: it does not start with "{" (whitespace aside)."""
    stripped = answer_so_far.lstrip()
    return bool(stripped) and not stripped.startswith("{")


def _stop_when_ruled_out(tokenizer: PreTrainedTokenizerBase, prompt_width: int):
    """Generation's per-row stop: a row stops at the token that rules it out (its parse error is the same
    as after `max_new_tokens`; the answer is then cut there), the batch once every row has stopped."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RuledOut(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: object, **kwargs: object) -> torch.Tensor:
            answers = tokenizer.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            return torch.tensor([ruled_out(answer) for answer in answers], dtype=torch.bool)

    return StoppingCriteriaList([RuledOut()])


@torch.inference_mode()
def _free_predictions(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_new_tokens: int
) -> list[Prediction]:
    started = time.perf_counter()
    input_ids, mask = _left_pad([prompt_ids(tokenizer, t) for t in texts], _pad_id(tokenizer))
    output = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=_pad_id(tokenizer),
        stopping_criteria=_stop_when_ruled_out(tokenizer, input_ids.shape[1]),
    )
    latency = (time.perf_counter() - started) * 1000 / len(texts)
    predictions = []
    for row in output[:, input_ids.shape[1] :]:
        raw = tokenizer.decode(row, skip_special_tokens=True)
        try:
            values: list[float] | None = [float(v) for v in parse_strict(raw)]
            error = None
        except StrictParseError as exc:
            values, error = None, str(exc)
            if ruled_out(raw):
                error += " (generation stopped there: no strict answer starts this way)"
        predictions.append(
            Prediction(
                values=values, raw_output=raw, json_valid=error is None, parse_error=error, latency_ms=latency
            )
        )
    return predictions


def predict_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    decoder: GenerativeDecoder = "skeleton",
    batch_size: int = 8,
    max_new_tokens: int = MAX_NEW_TOKENS,
    skeleton_memo: SkeletonMemo | None = None,
) -> list[Prediction]:
    """Predictions in input order, `batch_size` rows per forward.

    `latency_ms` of each row is its batch's wall time divided by the batch size (throughput, not the
    single-request latency: use `predict_one` for that). `skeleton_memo`: see `_skeleton_predictions`.
    """
    if decoder not in GENERATIVE_DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {', '.join(GENERATIVE_DECODERS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    predictions: list[Prediction] = []
    for batch in _batches(texts, batch_size):
        if decoder == "free":
            predictions += _free_predictions(model, tokenizer, batch, max_new_tokens)
        else:
            predictions += _skeleton_predictions(model, tokenizer, batch, decoder, skeleton_memo)
    return predictions


def predict_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    decoder: GenerativeDecoder = "skeleton",
) -> Prediction:
    """One request on its own; `latency_ms` is its wall time including tokenization."""
    return predict_batch(model, tokenizer, [text], decoder, batch_size=1)[0]
