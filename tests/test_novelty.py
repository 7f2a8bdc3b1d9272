"""The novelty score: how unlike the training requests a request is, calibrated on the training set itself."""

from __future__ import annotations

import numpy as np
import pytest

from tools.data.novelty import NOVELTY_DIR, NoveltyModel, novelty_profile

PLACES = ["harbour", "station", "garden", "market", "river", "temple", "bridge", "alley", "square", "hill"]
MOODS = ["calm", "sad", "bright", "warm", "quiet", "lonely", "cozy", "gentle"]
TRAIN = [f"a {mood} song for the {place} at dusk" for mood in MOODS for place in PLACES]


@pytest.fixture(scope="module")
def model() -> NoveltyModel:
    return NoveltyModel().fit(TRAIN)


def test_a_request_made_of_training_wording_is_familiar_and_one_with_none_of_it_is_maximally_novel(model):
    familiar, unseen = model.score(
        ["a calm song for the harbour at dusk", "thunderous orchestral boss battle"]
    )
    assert familiar <= 0.5
    assert unseen == 1.0  # less familiar than every training row


def test_familiarity_falls_and_novelty_rises_as_the_wording_leaves_the_training_rows(model):
    texts = [
        "a calm song for the harbour at dusk",
        "a calm song for the spaceship at dawn",
        "an electric riff for the spaceship reactor",
    ]
    familiarity, scores = model.familiarity(texts), model.score(texts)
    assert familiarity[0] > familiarity[1] > familiarity[2]
    assert scores[0] < scores[1] <= scores[2]


def test_words_no_training_row_has_make_a_request_less_familiar_not_invisible(model):
    known = "a calm song for the harbour"
    assert model.familiarity([known + " with zyx qwv plk"])[0] < model.familiarity([known])[0]


def test_requests_like_the_training_rows_are_unfamiliar_about_as_often_as_the_threshold_says():
    """Calibration is leave-one-out on the training rows: held-out rows of the same kind spread over [0, 1]
    and about 5% of them reach 0.95, not 0% (a self-match bug) nor 100% (an inverted rank)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    texts = [" ".join(rng.choice(words, size=8)) for _ in range(600)]
    scores = NoveltyModel().fit(texts[:400]).score(texts[400:])
    assert 0.35 < np.median(scores) < 0.65
    assert 0.0 < (scores >= 0.95).mean() < 0.15


def test_scores_are_deterministic_and_survive_a_save_and_load(model, tmp_path):
    texts = ["a calm song for the harbour at dusk", "a lonely riff for the moon", "nothing alike at all"]
    model.save(tmp_path / NOVELTY_DIR)
    loaded = NoveltyModel.beside(tmp_path)
    assert loaded is not None
    assert (
        model.score(texts).tolist()
        == loaded.score(texts).tolist()
        == NoveltyModel().fit(TRAIN).score(texts).tolist()
    )


def test_a_folder_without_a_novelty_model_serves_none(tmp_path):
    assert NoveltyModel.beside(tmp_path) is None
    assert NoveltyModel.beside(None) is None


def test_fitting_on_fewer_than_two_requests_is_refused():
    with pytest.raises(ValueError, match="at least two"):
        NoveltyModel().fit(["only one"])


def test_the_profile_counts_the_share_at_or_above_the_threshold_and_says_it_in_words():
    profile = novelty_profile([0.1, 0.5, 0.95, 1.0])
    assert profile.unfamiliar_share == 0.5 and profile.n_requests == 4
    assert profile.median == 0.725
    assert profile.sentence().startswith("50% of these 4 requests are less familiar than 95% of training")
    with pytest.raises(ValueError):
        novelty_profile([])


def test_every_trained_student_folder_carries_the_novelty_of_its_training_rows(tmp_path):
    from tools.core.contracts import HParams, StudentRecipe
    from tools.core.schema import ParamVector, SourceType, TrainingRow
    from tools.student.recipes import train_recipe

    rows = [
        TrainingRow(
            request_text=text,
            source_type=SourceType.request_text,
            target=ParamVector.from_list([i % 11] * 6),
        )
        for i, text in enumerate(TRAIN[:20])
    ]
    for recipe in (
        StudentRecipe(family="baseline", baseline="tfidf-ridge"),
        StudentRecipe(family="stack", components=["train-median", "tfidf-ridge"]),
    ):
        folder = tmp_path / recipe.family
        train_recipe(recipe, HParams(), rows, base_spec="unused", output_dir=folder, seed=0, progress=False)
        served = NoveltyModel.beside(folder)
        assert served is not None
        assert served.score(["a lonely riff for the moon"]).tolist() == (
            NoveltyModel().fit(TRAIN[:20]).score(["a lonely riff for the moon"]).tolist()
        )
