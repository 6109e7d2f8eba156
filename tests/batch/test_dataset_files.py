"""Recorded figures and parameters read from their files: exactly the values they record."""
import json

import pytest

import batch.evaluate.dataset_files as dataset_files
from batch.evaluate import load_profile, published_figures
from batch.readers import REFERENCE_DATA_DIR
from batch.training import TrainingParams
from shared.config import ConfigError, Settings, load_settings
from shared.scoring import ScoringParams, SourceWeights

YOOCHOOSE = REFERENCE_DATA_DIR / "yoochoose-100k"


def test_the_yoochoose_profile_gives_the_recorded_choice_exactly():
    """What ``recsys evaluate --tune`` chose on yoochoose-100k, written out once here."""
    scoring = ScoringParams(
        n=20, blend=0.1, normalisation="minmax", exclude_query=False,
        sources=SourceWeights(similar=0.25, cooc=0.25, next=0.5, session=6.0, similar_decay=0.0,
                              cooc_decay=0.6, next_decay=0.0, session_decay=0.35, window=20,
                              pool=200))
    training = {"alpha": 150.0, "factors": 32, "regularization": 0.1, "iterations": 15,
                "similar_k": 100}
    profile = load_profile("yoochoose-tuned")
    assert profile.scoring == scoring
    assert profile.training.reported() == training
    # The same types too (6.0, not 6; 20, not 20.0), as reports write them.
    assert json.dumps(profile.scoring.as_dict()) == json.dumps(scoring.as_dict())
    assert json.dumps(profile.training.reported()) == json.dumps(training)
    defaults = load_settings({})
    # Every other setting at its default: signal weights, GPU, ...
    assert profile.training == TrainingParams.from_settings(defaults).updated(training)
    assert profile.settings.weight_view == defaults.weight_view


def test_the_yoochoose_published_figures_are_the_readmes():
    published = published_figures(YOOCHOOSE)
    assert published.positions == 10152
    assert published.methods == {
        "vsknn": {"hr@20": 0.688, "mrr@20": 0.367}, "ar": {"hr@20": 0.634, "mrr@20": 0.326},
        "sr": {"hr@20": 0.619, "mrr@20": 0.352}, "item-kNN": {"hr@20": 0.399, "mrr@20": 0.180},
        "session popularity": {"hr@20": 0.381, "mrr@20": 0.264},
        "most popular": {"hr@20": 0.089, "mrr@20": 0.026}}
    assert list(published.methods) == ["vsknn", "ar", "sr", "item-kNN", "session popularity",
                                       "most popular"]
    assert "session-rec" in published.source
    assert published_figures(YOOCHOOSE / "peers") is None


def test_a_profile_is_read_as_its_environment_variables_would_be(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_files, "PROFILES_DIR", tmp_path)
    monkeypatch.setenv("RECSYS_BLEND", "0.9")  # the environment is not read
    (tmp_path / "p.toml").write_text('n = 7\nalpha = 40\nblend = 0.30000000000000004\n'
                                     'filter_shown = true\nnormalisation = "rank"\n')
    profile = load_profile("p")
    assert profile.settings == load_settings({"RECSYS_N": "7", "RECSYS_ALPHA": "40",
                                              "RECSYS_BLEND": "0.30000000000000004",
                                              "RECSYS_FILTER_SHOWN": "true",
                                              "RECSYS_NORMALISATION": "rank"})
    assert profile.scoring.blend == 0.1 + 0.2 and profile.scoring.n == 7
    assert isinstance(profile.training.alpha, float) and profile.training.alpha == 40.0
    (tmp_path / "bad.toml").write_text("n_recommendations = 7\n")
    with pytest.raises(ConfigError, match="n_recommendations"):
        load_profile("bad")
    (tmp_path / "range.toml").write_text("blend = 2.0\n")
    with pytest.raises(ConfigError, match=r"range.toml: blend=2.0 is out of range: it must be "
                                          r"between 0 and 1"):
        load_profile("range")


def test_the_defaults_are_the_tuned_choice():
    """What a shop runs with no settings is what tuning chose and evaluation measured."""
    tuned = load_profile("yoochoose-tuned")
    assert tuned.settings == Settings()
    assert tuned.scoring == ScoringParams.from_settings(Settings())
    assert tuned.training == TrainingParams.from_settings(Settings())


def test_the_paper_profile_is_the_papers_path():
    """profiles/paper.toml: ALS-similar items of the query item, re-ranked half by taste."""
    paper = load_profile("paper")
    assert paper.scoring == ScoringParams()  # the library's default is the paper's path
    assert paper.scoring.sources.active == ((0, 1.0, 0.0),)
    assert paper.training.reported() == {"alpha": 15.0, "factors": 64, "regularization": 0.01,
                                         "iterations": 15, "similar_k": 100}
