"""Word counts over a fitted vocabulary, exactly as scikit-learn's `CountVectorizer.transform` makes them
(lowercased text, `TOKEN_PATTERN` tokens, optional word bigrams, binary or counts; int64 CSR with sorted
indices), without importing scikit-learn: serving a fitted cheap model (`kotone-predict`) then loads numpy and
scipy.sparse only. Fitting still uses scikit-learn (`tools.evaluation.baselines`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKENS = re.compile(TOKEN_PATTERN)


def terms(text: str, *, bigrams: bool) -> list[str]:
    """The analyzer's terms: tokens of the lowercased text, then (with `bigrams`) each pair of neighbours."""
    tokens = _TOKENS.findall(text.lower())
    if not bigrams:
        return tokens
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


def count_matrix(
    texts: Sequence[str], vocabulary: dict[str, int], *, bigrams: bool = False, binary: bool = False
) -> sparse.csr_matrix:
    """(len(texts), len(vocabulary)) counts of the vocabulary's terms; terms outside it are dropped."""
    indices: list[int] = []
    values: list[int] = []
    indptr = [0]
    for text in texts:
        counts = Counter(
            i for term in terms(text, bigrams=bigrams) if (i := vocabulary.get(term)) is not None
        )
        for index in sorted(counts):
            indices.append(index)
            values.append(1 if binary else counts[index])
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(values, dtype=np.int64), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
        shape=(len(texts), len(vocabulary)),
        dtype=np.int64,
    )
