"""Hard-case replay: paraphrased copies of the worst TRAIN rows, targets unchanged.

Paraphrases are deterministic for a seed:
- our rule prompts: the same four parts under another frame, slot lines in another order;
- our free requests: the same lexicon phrases (which carry the targets) in another sentence frame,
  clause order and closer;
- any other text (e.g. the real kotone-ft data): synonym swaps from the lexicon, clause reordering inside
  sentences, and a different framing sentence.
Rows that appear in any protected (valid/test/eval) split are refused with `ReplayLeakError`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import normalise_text, text_key
from tools.data.generator import (
    load_catalogue,
    load_lexicon,
    parse_request_choice,
    parse_rule_parts,
    render_request,
)
from tools.data.generator import render_rule_prompt as render_rule

Failure = TrainingRow | tuple[str, Sequence[int]]
ATTEMPTS_PER_COPY = 12
# A replay copy's origin names its source row (`replay:<text_key>`): CV folds keep a copy with its source.
REPLAY_ORIGIN = "replay:"


class ReplayLeakError(ValueError):
    """A row given to replay belongs to a protected (eval/test) split."""


def _as_row(failure: Failure) -> TrainingRow:
    if isinstance(failure, TrainingRow):
        return failure
    text, target = failure
    source = SourceType.rule_prompt if parse_rule_parts(text) else SourceType.request_text
    return TrainingRow(request_text=text, source_type=source, target=ParamVector.from_list(list(target)))


def paraphrase(text: str, rng: random.Random) -> str:
    """One rewording of `text` that keeps everything the target depends on."""
    parts = parse_rule_parts(text)
    if parts is not None:
        order = list(range(len(parts)))
        rng.shuffle(order)
        return render_rule(parts, frame=rng.choice(load_catalogue().rule_paraphrase_frames), slot_order=order)
    choice = parse_request_choice(text)
    if choice is not None:
        return render_request(choice, rng)
    return _reword(text, rng)


def _reword(text: str, rng: random.Random) -> str:
    lexicon = load_lexicon()
    lines = []
    for line in text.splitlines():
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s]
        lines.append(" ".join(_reorder_clauses(s, rng) for s in sentences))
    body = "\n".join(line for line in lines if line)
    words = [w for w in lexicon.synonyms if re.search(rf"\b{w}\b", body, re.I)]
    for word in rng.sample(words, min(2, len(words))):
        body = re.sub(
            rf"\b{word}\b",
            lambda m, w=word: _match_case(m.group(), rng.choice(lexicon.synonyms[w])),
            body,
            count=1,
            flags=re.I,
        )
    return rng.choice(lexicon.reframes).format(text=body)


def _reorder_clauses(sentence: str, rng: random.Random) -> str:
    """Shuffle the comma-separated clauses after the first one (the head keeps the verb)."""
    end = sentence[-1] if sentence[-1] in ".!?:" else ""
    clauses = [c.strip() for c in sentence[: len(sentence) - len(end)].split(",") if c.strip()]
    head, rest = clauses[0], clauses[1:]
    rng.shuffle(rest)
    return ", ".join([head, *rest]) + end


def _match_case(original: str, replacement: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement


def hard_case_replay(
    failures: Sequence[Failure],
    n: int,
    seed: int,
    *,
    protected: Mapping[str, Sequence[TrainingRow]],
) -> list[TrainingRow]:
    """Up to n paraphrased copies, round-robin over `failures` in the order given (worst first).

    Failures are ordered by the caller (e.g. by row MAE); a failure that is in any protected split is
    refused (ReplayLeakError) before anything is written. Copies never repeat a text already produced.
    """
    rows = [_as_row(f) for f in failures]
    protected_texts = {
        normalise_text(r.request_text): name for name, split in protected.items() for r in split
    }
    leaks = [
        (protected_texts[k], r.request_text)
        for r in rows
        if (k := normalise_text(r.request_text)) in protected_texts
    ]
    if leaks:
        split, text = leaks[0]
        raise ReplayLeakError(
            f"refusing replay: {len(leaks)} row(s) belong to protected splits, e.g. {split}: {text[:80]!r}"
        )
    rng = random.Random(seed)
    seen = {normalise_text(r.request_text) for r in rows} | set(protected_texts)
    copies: list[TrainingRow] = []
    exhausted: set[int] = set()
    position = 0
    while rows and len(copies) < n and len(exhausted) < len(rows):
        i = position % len(rows)
        position += 1
        if i in exhausted:
            continue
        source = rows[i]
        for _ in range(ATTEMPTS_PER_COPY):
            text = paraphrase(source.request_text, rng)
            if normalise_text(text) not in seen:
                seen.add(normalise_text(text))
                copies.append(
                    source.model_copy(
                        update={
                            "request_text": text,
                            "origin": f"{REPLAY_ORIGIN}{text_key(source.request_text)}",
                        }
                    )
                )
                break
        else:
            exhausted.add(i)
    return copies
