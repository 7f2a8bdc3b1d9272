"""The shift benchmark's folds hold out whole clusters of wording, and skip cleanly without kotone-ft."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold

from scripts import shift
from tools.core.schema import ParamVector, SourceType, TrainingRow

TOPICS = {
    "harbour": "boats gulls tide pier",
    "festival": "drums lanterns crowd dance",
    "library": "pages dust quiet study",
}
ROWS = [
    TrainingRow(
        request_text=f"music for the {place}: {words} take {i}",
        source_type=SourceType.request_text,
        target=ParamVector.from_list([i % 11] * 6),
    )
    for place, words in TOPICS.items()
    for i in range(12)
]


def test_clusters_follow_the_wording_and_no_cluster_is_on_both_sides_of_a_fold():
    clusters = shift.request_clusters(ROWS, n_clusters=3, seed=0)
    by_topic = [set(clusters[i * 12 : (i + 1) * 12].tolist()) for i in range(3)]
    assert all(len(ids) == 1 for ids in by_topic) and len(set.union(*by_topic)) == 3
    for inner, outer in GroupKFold(3).split(ROWS, groups=clusters):
        assert not set(clusters[inner]) & set(clusters[outer])


def test_held_out_rows_are_scored_against_the_other_clusters_only():
    clusters = shift.request_clusters(ROWS, n_clusters=3, seed=0)
    splits = list(GroupKFold(3).split(ROWS, groups=clusters))
    novelty = shift.held_out_novelty(ROWS, splits)
    # Every held-out topic is unlike the other two: less familiar than (almost) every training row.
    assert np.all(novelty >= 0.95)
    random = [(np.setdiff1d(np.arange(36), np.arange(k, 36, 3)), np.arange(k, 36, 3)) for k in range(3)]
    assert np.median(shift.held_out_novelty(ROWS, random)) < 0.95


def test_without_kotone_ft_the_benchmark_says_so_and_exits_0(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shift, "REAL_DATA_DIR", tmp_path / "absent")
    assert shift.main(["--data", "real", "--skip-lm"]) == 0
    assert "shift benchmark skipped: kotone-ft is not at" in capsys.readouterr().out
