"""How unlike the training requests a request is: a novelty score per request, and its profile per batch.

Familiarity of a text = the mean cosine similarity to its `k` nearest training requests in a TF-IDF space
(word 1-2 grams, sublinear tf, l2-normalised: the TF-IDF ridge's features) fitted on the training rows.
Novelty is that familiarity calibrated against the training set itself: the share of training rows that
are more familiar to the *other* training rows (leave-one-out) than the request is to all of them. So a
request like the training rows has novelty ~ uniform on [0, 1], and novelty >= 0.95 reads "less familiar
than 95% of training" — which about 5% of in-distribution requests are, by construction.

Deterministic (no sampling, similarities rounded before ranking), cheap (one sparse product against the
training matrix) and saved as plain arrays beside a student (`novelty/` in its folder), so every student
family serves it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from scipy import sparse

from tools.core.atomic import atomic_write_json
from tools.data.bag_of_words import TOKEN_PATTERN, count_matrix, terms

NOVELTY_DIR = "novelty"
SPEC_FILE = "novelty.json"
ARRAYS_FILE = "arrays.npz"
NEIGHBOURS = 5
UNFAMILIAR = 0.95  # the profile's headline: the share of requests less familiar than this share of training
DECIMALS = 6


class NoveltySpec(BaseModel):
    neighbours: int
    training_rows: int
    vocabulary: dict[str, int]


class NoveltyProfile(BaseModel):
    """A batch's novelty in a few numbers; `unfamiliar_share` is the headline."""

    n_requests: int
    threshold: float = Field(UNFAMILIAR, description="novelty at or above this counts as unfamiliar")
    unfamiliar_share: float = Field(
        description="share of the requests less familiar than `threshold` of the training rows "
        "(about 1 - threshold for requests like the training rows)"
    )
    median: float
    p90: float
    mean: float

    def sentence(self) -> str:
        expected = 1 - self.threshold
        return (
            f"{self.unfamiliar_share:.0%} of these {self.n_requests} requests are less familiar than "
            f"{self.threshold:.0%} of training (about {expected:.0%} expected for requests like the training "
            f"rows; median novelty {self.median:.2f})"
        )


def novelty_profile(novelty: Sequence[float] | np.ndarray, threshold: float = UNFAMILIAR) -> NoveltyProfile:
    values = np.asarray(novelty, dtype=float)
    if values.size == 0:
        raise ValueError("a novelty profile needs at least one request")
    return NoveltyProfile(
        n_requests=int(values.size),
        threshold=threshold,
        unfamiliar_share=round(float((values >= threshold).mean()), 4),
        median=round(float(np.median(values)), 4),
        p90=round(float(np.quantile(values, 0.9)), 4),
        mean=round(float(values.mean()), 4),
    )


def _top_k_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    """Row-wise mean of the k largest entries of a dense (n, m) matrix (k <= m)."""
    if k <= 0:
        return np.zeros(similarities.shape[0])
    top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1).round(DECIMALS)


class NoveltyModel:
    """`fit(texts)`, `score(texts) -> novelty in [0, 1]`, `save(folder)`, `NoveltyModel.load(folder)`."""

    def __init__(self, neighbours: int = NEIGHBOURS) -> None:
        self.neighbours = neighbours
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.matrix = sparse.csr_matrix((0, 0))
        self.reference = np.zeros(0)  # the training rows' leave-one-out familiarity, sorted

    def _counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Sublinear term frequencies (1 + log tf) over the fitted vocabulary (served without scikit-learn)."""
        counts = count_matrix(texts, self.vocabulary, bigrams=True).astype(float).tocsr()
        counts.data = 1.0 + np.log(counts.data)
        return counts

    @property
    def unseen_idf(self) -> float:
        """The idf a term no training row has (sklearn's smoothed formula with document frequency 0)."""
        return float(np.log(1 + self.matrix.shape[0]) + 1)

    @staticmethod
    def _normalised(
        weighted: sparse.csr_matrix, extra_squared: np.ndarray | None = None
    ) -> sparse.csr_matrix:
        squared = np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel()
        if extra_squared is not None:
            squared = squared + extra_squared
        norms = np.sqrt(squared)
        return (sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weighted).tocsr()

    def fit(self, texts: Sequence[str]) -> NoveltyModel:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(texts) < 2:
            raise ValueError("novelty needs at least two training requests (it is calibrated leave-one-out)")
        fitted = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=TOKEN_PATTERN).fit(
            texts
        )
        self.vocabulary = {term: int(i) for term, i in fitted.vocabulary_.items()}
        self.idf = fitted.idf_
        counts = self._counts(texts)
        self.matrix = self._normalised(counts @ sparse.diags(self.idf))
        # Leave one out honestly: a term only this row has would be unseen without it, and an unseen term of a
        # new request counts in its norm (`familiarity`) at the unseen idf, so here it does too.
        only_here = np.asarray((counts > 0).sum(axis=0)).ravel() == 1
        held_out = self._normalised(counts @ sparse.diags(np.where(only_here, self.unseen_idf, self.idf)))
        similarities = (held_out @ self.matrix.T).toarray()
        np.fill_diagonal(similarities, -np.inf)  # a row is not its own neighbour
        k = min(self.neighbours, len(texts) - 1)
        self.reference = np.sort(_top_k_mean(similarities, k))
        return self

    def familiarity(self, texts: Sequence[str]) -> np.ndarray:
        """Mean cosine similarity to the k nearest training rows; words and word pairs no training row has
        weigh in the request's norm at the unseen idf (they make it less familiar, not invisible)."""
        unseen = np.zeros(len(texts))
        for i, text in enumerate(texts):
            missing = [t for t in terms(text, bigrams=True) if t not in self.vocabulary]
            tf = np.unique(missing, return_counts=True)[1] if missing else np.zeros(0)
            unseen[i] = float((((1.0 + np.log(tf)) * self.unseen_idf) ** 2).sum())
        query = self._normalised(self._counts(texts) @ sparse.diags(self.idf), unseen)
        similarities = (query @ self.matrix.T).toarray()
        return _top_k_mean(similarities, min(self.neighbours, self.matrix.shape[0] - 1))

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the share of training rows more familiar (leave-one-out) than it is: 0 = as familiar as
        the most familiar training row, 1 = less familiar than every one."""
        if not len(texts):
            return np.zeros(0)
        more_familiar = len(self.reference) - np.searchsorted(
            self.reference, self.familiarity(texts), "right"
        )
        return (more_familiar / len(self.reference)).round(4)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{ARRAYS_FILE}.tmp.npz"
        np.savez(
            tmp,
            idf=self.idf,
            reference=self.reference,
            data=self.matrix.data,
            indices=self.matrix.indices,
            indptr=self.matrix.indptr,
            shape=np.array(self.matrix.shape),
        )
        tmp.replace(folder / ARRAYS_FILE)
        spec = NoveltySpec(
            neighbours=self.neighbours, training_rows=self.matrix.shape[0], vocabulary=self.vocabulary
        )
        atomic_write_json(folder / SPEC_FILE, spec)

    @classmethod
    def load(cls, folder: Path) -> NoveltyModel:
        spec = NoveltySpec.model_validate_json((folder / SPEC_FILE).read_text())
        model = cls(spec.neighbours)
        model.vocabulary = spec.vocabulary
        with np.load(folder / ARRAYS_FILE) as arrays:
            model.idf, model.reference = arrays["idf"], arrays["reference"]
            model.matrix = sparse.csr_matrix(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
            )
        return model

    @classmethod
    def beside(cls, student_dir: Path | None) -> NoveltyModel | None:
        """The novelty model saved with a student, or None (the untouched base model, or a student trained
        before novelty was saved)."""
        if student_dir is None or not (Path(student_dir) / NOVELTY_DIR / SPEC_FILE).is_file():
            return None
        return cls.load(Path(student_dir) / NOVELTY_DIR)
