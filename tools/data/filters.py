"""Filters for augmented pairs, each counted in a `FilterReport`.

Checks, in order (a row is dropped for the first one it fails):
schema_range, length, language, numeric_leak, protected_exact, protected_near, protected_same_content,
train_exact, train_near, batch_exact, batch_near.

Near-duplicates: Jaccard similarity of character 5-gram shingle sets of the normalised text, computed
exactly with one sparse matrix product per reference set. Shingles that occur in more than
`boilerplate_df` of the reference rows (fixed template wording such as the rule-prompt frame) are
ignored, so similarity measures the content that carries the targets: a paraphrase of an eval row
with one word changed, or a rule prompt's parts in another frame and order, are caught; two rule prompts
sharing a frame are not. Text similarity cannot catch every paraphrase (a free request re-framed around the
same phrases scores 0.4-0.7), so texts in the generator's own format are also compared by content: the same
part set / phrase set as a protected row is a leak whatever the wording (`protected_same_content`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from pydantic import BaseModel
from scipy import sparse

from tools.core.schema import TrainingRow
from tools.data.dataset import DatasetError, normalise_text, parse_record
from tools.data.generator import content_key, load_catalogue, load_lexicon

REASONS: tuple[str, ...] = (
    "schema_range",
    "length",
    "language",
    "numeric_leak",
    "protected_exact",
    "protected_near",
    "protected_same_content",
    "train_exact",
    "train_near",
    "batch_exact",
    "batch_near",
)
SHINGLE = 5
_NUMBER = re.compile(r"(?<![a-z0-9])\d+(?:[.,]\d+)?(?![a-z0-9])", re.I)
_RATING = re.compile(
    r"\b(?:\d+|zero|one|two|three|four|five|six|seven|eight|nine|ten)\s*(?:/\s*10|out of (?:10|ten))\b", re.I
)
_ENGLISH_FUNCTION_WORDS = frozenset(
    " ".join(
        [
            "a an the and or but for with without of in on at to from by into over under like as is",
            "are be it its this that these those i me my we our you your please could would can will",
            "should want need make some something more less very just not no so than then there here",
            "what when where while about after before during around",
        ]
    ).split()
)


class FilterConfig(BaseModel):
    near_dup_threshold: float = 0.7
    boilerplate_df: float = 0.2
    min_chars: int = 15
    max_chars: int = 800
    min_words: int = 4
    min_english_share: float = 0.2
    max_non_ascii_share: float = 0.05


class FilterReport(BaseModel):
    """Counts per reason; `leaked_against_protected` re-checks the KEPT rows and must be 0."""

    n_candidates: int
    n_kept: int
    dropped: dict[str, int]
    dropped_against: dict[str, dict[str, int]]
    examples: dict[str, list[str]]
    leaked_against_protected: int
    protected_rows: dict[str, int]
    train_rows: int
    paraphrase_origins: list[str]
    config: FilterConfig
    elapsed_s: float


def _shingles(text: str) -> set[str]:
    norm = f" {normalise_text(text)} "
    return {norm[i : i + SHINGLE] for i in range(max(1, len(norm) - SHINGLE + 1))}


class ShingleIndex:
    """Binary shingle matrices over one vocabulary; boilerplate shingles (high df in references) removed."""

    def __init__(self, reference_texts: Sequence[str], boilerplate_df: float) -> None:
        sets = [_shingles(t) for t in reference_texts]
        df: dict[str, int] = {}
        for shingles in sets:
            for s in shingles:
                df[s] = df.get(s, 0) + 1
        limit = boilerplate_df * max(1, len(sets))
        self.vocabulary = {s: i for i, s in enumerate(sorted(s for s, c in df.items() if c <= limit))}

    def matrix(self, texts: Sequence[str]) -> sparse.csr_matrix:
        indptr, indices = [0], []
        for text in texts:
            cols = sorted({self.vocabulary[s] for s in _shingles(text) if s in self.vocabulary})
            indices.extend(cols)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)
        return sparse.csr_matrix((data, indices, indptr), shape=(len(texts), len(self.vocabulary)))


def jaccard(a: sparse.csr_matrix, b: sparse.csr_matrix) -> np.ndarray:
    """Dense |A∩B| / |A∪B| for every row pair (0 where both sets are empty)."""
    inter = (a @ b.T).toarray()
    size_a = np.asarray(a.sum(axis=1)).reshape(-1, 1)
    size_b = np.asarray(b.sum(axis=1)).reshape(1, -1)
    return inter / np.maximum(size_a + size_b - inter, 1)  # both empty: 0 / 1


@lru_cache(maxsize=1)
def _english_vocabulary() -> frozenset[str]:

    words = set(_ENGLISH_FUNCTION_WORDS)
    catalogue, lexicon = load_catalogue(), load_lexicon()
    texts = [p.name for parts in catalogue.slots.values() for p in parts]
    texts += [p.text for cat in lexicon.categories.values() for p in cat.phrases]
    texts += lexicon.frames + lexicon.closers + [catalogue.rule_template]
    for text in texts:
        words.update(re.findall(r"[a-z]+", text.lower()))
    return frozenset(words)


def language_ok(text: str, config: FilterConfig) -> bool:
    """English-ish: almost all ASCII, and enough known English words (function words + our vocabulary)."""
    non_ascii = sum(not c.isascii() for c in text)
    if non_ascii > config.max_non_ascii_share * len(text):
        return False
    words = re.findall(r"[a-z]+", text.lower())
    known = sum(w in _english_vocabulary() for w in words)
    return bool(words) and known >= config.min_english_share * len(words)


def numeric_leak(row: TrainingRow) -> bool:
    """A number in the text equal to a target value, or any 'N/10' / 'N out of ten' rating."""
    if _RATING.search(row.request_text):
        return True
    targets = set(row.target.as_list())
    for match in _NUMBER.finditer(row.request_text):
        value = float(match.group().replace(",", "."))
        if value.is_integer() and int(value) in targets:
            return True
    return False


def filter_augmented(
    candidates: Sequence[TrainingRow | Mapping],
    *,
    train: Sequence[TrainingRow],
    protected: Mapping[str, Sequence[TrainingRow]],
    config: FilterConfig | None = None,
    paraphrase_origins: Sequence[str] = ("replay",),
) -> tuple[list[TrainingRow], FilterReport]:
    """Keep the candidates that pass every filter. Raw dicts (kotone-ft or flat format) are validated first.

    Rows whose origin starts with one of `paraphrase_origins` (hard-case replay: paraphrases of train rows,
    several per row, by design) skip the train and within-batch near-duplicate checks; every other check,
    and every protected check, applies to every row.
    """
    started = time.perf_counter()
    config = config or FilterConfig()
    dropped = dict.fromkeys(REASONS, 0)
    against: dict[str, dict[str, int]] = {
        "protected_exact": {},
        "protected_near": {},
        "protected_same_content": {},
    }
    examples: dict[str, list[str]] = {r: [] for r in REASONS}

    def drop(reason: str, text: str, split: str | None = None) -> None:
        dropped[reason] += 1
        if split is not None:
            against[reason][split] = against[reason].get(split, 0) + 1
        if len(examples[reason]) < 3:
            examples[reason].append(text[:160])

    rows: list[TrainingRow] = []
    for i, candidate in enumerate(candidates):
        if isinstance(candidate, TrainingRow):
            row = candidate
        else:
            try:
                row = parse_record(dict(candidate), f"candidate {i}")
            except (DatasetError, TypeError, ValueError) as exc:
                drop("schema_range", str(exc))
                continue
        text = row.request_text
        if not (config.min_chars <= len(text) <= config.max_chars and len(text.split()) >= config.min_words):
            drop("length", text)
        elif not language_ok(text, config):
            drop("language", text)
        elif numeric_leak(row):
            drop("numeric_leak", text)
        else:
            rows.append(row)

    protected_exact = {
        normalise_text(r.request_text): name for name, split in protected.items() for r in split
    }
    protected_content = _content_index(protected)
    train_exact = {normalise_text(r.request_text) for r in train}
    reference_texts = [r.request_text for r in train] + [
        r.request_text for s in protected.values() for r in s
    ]
    index = ShingleIndex(reference_texts, config.boilerplate_df)
    cand_matrix = index.matrix([r.request_text for r in rows])
    near_protected = {
        name: jaccard(cand_matrix, index.matrix([r.request_text for r in split])).max(axis=1, initial=0.0)
        for name, split in protected.items()
    }
    near_train = jaccard(cand_matrix, index.matrix([r.request_text for r in train])).max(axis=1, initial=0.0)
    within = jaccard(cand_matrix, cand_matrix)

    kept: list[TrainingRow] = []
    kept_index: list[int] = []
    kept_norm: set[str] = set()
    for i, row in enumerate(rows):
        norm = normalise_text(row.request_text)
        is_paraphrase = row.origin.startswith(tuple(paraphrase_origins))
        near_split = next(
            (n for n, sims in near_protected.items() if sims[i] >= config.near_dup_threshold), None
        )
        if norm in protected_exact:
            drop("protected_exact", row.request_text, protected_exact[norm])
        elif near_split is not None:
            drop("protected_near", row.request_text, near_split)
        elif (key := content_key(row.request_text)) is not None and key in protected_content:
            drop("protected_same_content", row.request_text, protected_content[key])
        elif norm in train_exact:
            drop("train_exact", row.request_text)
        elif near_train[i] >= config.near_dup_threshold and not is_paraphrase:
            drop("train_near", row.request_text)
        elif norm in kept_norm:
            drop("batch_exact", row.request_text)
        elif kept_index and not is_paraphrase and within[i, kept_index].max() >= config.near_dup_threshold:
            drop("batch_near", row.request_text)
        else:
            kept.append(row)
            kept_index.append(i)
            kept_norm.add(norm)

    leaked = count_leaks(kept, protected, index, config)
    return kept, FilterReport(
        n_candidates=len(candidates),
        n_kept=len(kept),
        dropped=dropped,
        dropped_against=against,
        examples={k: v for k, v in examples.items() if v},
        leaked_against_protected=leaked,
        protected_rows={name: len(split) for name, split in protected.items()},
        train_rows=len(train),
        paraphrase_origins=list(paraphrase_origins),
        config=config,
        elapsed_s=round(time.perf_counter() - started, 4),
    )


def _content_index(protected: Mapping[str, Sequence[TrainingRow]]) -> dict[tuple, str]:
    keys = {}
    for name, split in protected.items():
        for row in split:
            key = content_key(row.request_text)
            if key is not None:
                keys[key] = name
    return keys


def count_leaks(
    kept: Sequence[TrainingRow],
    protected: Mapping[str, Sequence[TrainingRow]],
    index: ShingleIndex,
    config: FilterConfig,
) -> int:
    """Independent re-check of the kept set against every protected split (exact + near)."""
    if not kept:
        return 0
    exact = {normalise_text(r.request_text) for split in protected.values() for r in split}
    content = _content_index(protected)
    leaked = np.array(
        [normalise_text(r.request_text) in exact or content_key(r.request_text) in content for r in kept]
    )
    kept_matrix = index.matrix([r.request_text for r in kept])
    for split in protected.values():
        if split:
            sims = jaccard(kept_matrix, index.matrix([r.request_text for r in split]))
            leaked |= sims.max(axis=1) >= config.near_dup_threshold
    return int(leaked.sum())
