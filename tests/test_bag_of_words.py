"""Serving a fitted cheap model without scikit-learn: the word counts are exactly CountVectorizer's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from tools.data.bag_of_words import TOKEN_PATTERN, count_matrix

TRAIN = [
    "Make game music.\n- style: Jazz\n- mood: rain rain RAIN",
    "a calm song for a rainy evening, café vibes — naïve über-chill",
    "EDM at the festival!!! 120bpm, 4x4 kick; drop drop",
    "x y z 1 22 333 under_score snake_case Mixed-Case",
]
QUERIES = [*TRAIN, "", "   ", "unknown words only", "rain rain jazz café CAFÉ Café", "drop drop drop drop"]


@pytest.mark.parametrize(
    ("ngram_range", "binary"), [((1, 1), True), ((1, 2), False), ((1, 1), False), ((1, 2), True)]
)
def test_counts_equal_count_vectorizer_cell_for_cell(ngram_range, binary):
    fitted = CountVectorizer(ngram_range=ngram_range, binary=binary, token_pattern=TOKEN_PATTERN).fit(TRAIN)
    want = fitted.transform(QUERIES)
    got = count_matrix(QUERIES, fitted.vocabulary_, bigrams=ngram_range == (1, 2), binary=binary)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.toarray(), want.toarray())
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
