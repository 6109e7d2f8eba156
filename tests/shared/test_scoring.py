"""The scoring path: fold-in parity with implicit, exact rankings, filters, fall-backs, state rules."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import sparse

from shared.model import Model
from shared.scoring import (History, ScoringParams, Session, SourceWeights, add_shown,
                            add_to_history, add_to_session, anchor_weights, blend_scores,
                            fold_in_user, history_arrays, normalise, popular_items, score_catalogue,
                            score_event, to_indices)

implicit_als = pytest.importorskip("implicit.cpu.als")


# ---------------------------------------------------------------------------
# Fold-in
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    """A tiny implicit ALS fitted on random confidences (40 users x 15 items)."""
    rng = np.random.default_rng(7)
    dense = (rng.random((40, 15)) < 0.25) * (1.0 + 15.0 * 0.25 * rng.integers(1, 4, (40, 15)))
    user_items = sparse.csr_matrix(dense.astype(np.float32))
    model = implicit_als.AlternatingLeastSquares(factors=6, regularization=0.3, alpha=1.0,
                                                 iterations=6, random_state=1, num_threads=1)
    model.fit(user_items, show_progress=False)
    return model, user_items


@pytest.mark.parametrize("user", [0, 3, 11, 27])
def test_fold_in_matches_implicit_recalculate_user(fitted, user):
    model, user_items = fitted
    row = user_items[user]
    expected = model.recalculate_user(user, row)
    got = fold_in_user(model.item_factors, row.indices, row.data,
                       regularization=model.regularization)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # The precomputed gram gives the same answer.
    y = model.item_factors.astype(np.float64)
    np.testing.assert_allclose(fold_in_user(model.item_factors, row.indices, row.data,
                                            regularization=model.regularization, gram=y.T @ y),
                               expected, atol=1e-4)


def test_fold_in_matches_implicit_with_its_own_alpha(fitted):
    """implicit scales stored values by its alpha: that product is the confidence c."""
    model, user_items = fitted
    model.alpha = 3.0
    try:
        row = user_items[5]
        expected = model.recalculate_user(5, row)
        got = fold_in_user(model.item_factors, row.indices, 3.0 * row.data,
                           regularization=model.regularization)
    finally:
        model.alpha = 1.0
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_fold_in_matches_implicit_on_a_disliked_item(fitted):
    model, _ = fitted
    row = sparse.csr_matrix((np.array([4.75, -3.0], dtype=np.float32), ([0, 0], [2, 9])),
                            shape=(1, 15))
    expected = model.recalculate_user(0, row)
    got = fold_in_user(model.item_factors, row.indices, row.data, regularization=model.regularization)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_fold_in_without_items_is_zero():
    y = np.ones((3, 4), dtype=np.float32)
    assert fold_in_user(y, [], [], regularization=0.1).tolist() == [0.0] * 4


def test_fold_in_solves_the_normal_equations():
    y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    x = fold_in_user(y, [2], [5.0], regularization=0.5)
    a = y.T @ y + 4.0 * np.outer(y[2], y[2]) + 0.5 * np.eye(2)
    np.testing.assert_allclose(a @ x, 5.0 * y[2])


# ---------------------------------------------------------------------------
# Tiny hand-built models
# ---------------------------------------------------------------------------

def make_model(n_items=6, factors=None, similar=None, cooc=None, follows=None, popularity=None,
               category=None, regularization=0.1) -> Model:
    """A model with the given neighbour lists: dict item -> [(item, score), ...]."""
    def lists(spec, k=3):
        items = np.full((n_items, k), -1, dtype=np.int32)
        scores = np.zeros((n_items, k), dtype=np.float32)
        for i, row in (spec or {}).items():
            for j, (item, score) in enumerate(row):
                items[i, j], scores[i, j] = item, score
        return items, scores
    if factors is None:
        factors = np.eye(n_items, 3, dtype=np.float32) + 0.01
    s, c, f = lists(similar), lists(cooc), lists(follows)
    return Model(
        version="test", item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_factors=np.asarray(factors, dtype=np.float32),
        similar_items=s[0], similar_scores=s[1], cooc_items=c[0], cooc_scores=c[1],
        next_items=f[0], next_scores=f[1],
        popularity=np.asarray(popularity if popularity is not None else np.arange(n_items, 0, -1),
                              dtype=np.float32),
        item_category=np.asarray(category if category is not None else [-1] * n_items, dtype=np.int32),
        categories=np.array(["shoes", "bags"]), meta={"params": {"regularization": regularization}})


# Asymmetric on purpose: 0 -> 3 -> 1, but 3 -/-> 0; reading the transposed lists fails.
ASYMMETRIC = dict(similar={0: [(3, 0.9), (1, 0.5), (2, 0.1)], 3: [(1, 0.8)], 1: [(4, 0.7)]},
                  follows={0: [(2, 5.0), (5, 1.0)], 2: [(4, 3.0)], 5: [(0, 1.0)]})


def ids(rec):
    return rec.items.tolist()


def item_id(m, index) -> str:
    """The external id of a model index; an index outside the model is an id it does not know."""
    return str(m.item_ids[index]) if 0 <= index < m.n_items else f"unknown{index}"


def score(m, query_item, history_items=(), history_confidence=(), *, session_items=(), bought=(),
          shown=(), unavailable=None, query_category=-1, user_factors=None, **params):
    """:func:`score_event` of a state written in model indices (and a category code)."""
    name = lambda index: item_id(m, index)  # noqa: E731
    history = History(items=tuple(map(name, history_items)),
                      confidence=tuple(map(float, history_confidence)),
                      last_ts_ms=(0,) * len(history_items), bought=tuple(map(name, bought)))
    session = Session(items=tuple(map(name, session_items)), shown=tuple(map(name, shown)))
    category = str(m.categories[query_category]) if query_category >= 0 else None
    return score_event(m, history, session, name(query_item),
                       ScoringParams(filter_shown=True, **params), query_category=category,
                       unavailable=unavailable, user_factors=user_factors)


def test_similar_items_in_the_query_rows_order():
    m = make_model(**ASYMMETRIC)
    rec = score(m, 0, n=3, blend=0.0)
    assert ids(rec) == [3, 1, 2]
    assert rec.strategy == "similar"
    np.testing.assert_allclose(rec.scores, [1.0, 0.5, 0.0])
    assert ids(score(m, 3, n=1, blend=0.0)) == [1]


def test_next_source_follows_the_row_not_the_column():
    m = make_model(**ASYMMETRIC)
    only_next = SourceWeights(similar=0.0, next=1.0)
    assert ids(score(m, 0, n=2, blend=0.0, sources=only_next)) == [2, 5]
    assert ids(score(m, 2, n=1, blend=0.0, sources=only_next)) == [4]


def test_sources_add_up_with_their_weights_after_max_normalisation():
    m = make_model(**ASYMMETRIC)
    # similar: 3 -> 1.0, 1 -> 0.556, 2 -> 0.111; next: 2 -> 1.0, 5 -> 0.2.
    both = SourceWeights(similar=1.0, next=1.0)
    rec = score(m, 0, n=4, blend=0.0, sources=both)
    assert ids(rec) == [2, 3, 1, 5]
    # Weight 2 on similar puts 3 first.
    assert ids(score(m, 0, n=2, blend=0.0, sources=SourceWeights(similar=2.0, next=1.0))) == [3, 2]


def test_older_session_items_count_with_the_decay():
    m = make_model(**ASYMMETRIC)
    # Session 5 then 0 (query): next(0) = {2: 5, 5: 1}, next(5) = {0: 1} weighted 0.5.
    src = SourceWeights(similar=0.0, next=1.0, next_decay=0.5)
    rec = score(m, 0, n=3, blend=0.0, sources=src, session_items=[5, 0], exclude_query=False)
    assert ids(rec) == [2, 5, 0]
    np.testing.assert_allclose(rec.scores, [1.0, 0.1 / 0.9, 0.0], atol=1e-6)
    # decay 0: only the query's row.
    src0 = SourceWeights(similar=0.0, next=1.0, next_decay=0.0)
    rec0 = score(m, 0, n=3, blend=0.0, sources=src0, session_items=[5, 0], exclude_query=False)
    assert ids(rec0)[:2] == [2, 5] and rec0.strategy == "similar+popular"


def test_session_source_brings_back_recent_items_query_first():
    m = make_model(**ASYMMETRIC)
    src = SourceWeights(similar=0.0, session=1.0, session_decay=0.5)
    rec = score(m, 4, n=3, blend=0.0, sources=src, session_items=[1, 2, 1, 4],
                    exclude_query=False)
    # 4: 1, 1: 0.5 + 0.125 = 0.625, 2: 0.25.
    assert ids(rec) == [4, 1, 2]


def test_personal_score_reranks_the_candidates():
    # Items 1 and 2 are equally similar to 0; the user likes the direction of item 2.
    y = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    m = make_model(n_items=4, factors=y, similar={0: [(1, 0.5), (2, 0.5), (3, 0.4)]})
    assert ids(score(m, 0, n=3, blend=0.0)) == [1, 2, 3]  # tie -> lower index
    rec = score(m, 0, [2], [10.0], n=3, blend=0.5)
    assert ids(rec)[0] == 2
    assert rec.strategy == "personalized_similar"
    # The same with the vector given.
    x = fold_in_user(y, [2], [10.0], regularization=0.1)
    assert ids(score(m, 0, n=3, blend=0.5, user_factors=x)) == ids(rec)
    # blend 1: personal score alone orders the candidates.
    order = np.argsort(-(y[[1, 2, 3]] @ x), kind="stable")
    assert ids(score(m, 0, n=3, blend=1.0, user_factors=x)) == [[1, 2, 3][i] for i in order]


def test_pool_limits_what_the_personal_score_can_lift():
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    m = make_model(n_items=4, factors=y, similar={0: [(1, 0.9), (2, 0.8), (3, 0.1)]})
    x = np.array([0.0, 5.0])
    assert ids(score(m, 0, n=1, blend=0.9, user_factors=x))[0] == 3
    pooled = SourceWeights(pool=2)
    assert ids(score(m, 0, n=3, blend=0.9, user_factors=x, sources=pooled))[:2] == [2, 1]


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------

def test_filters_bought_shown_unavailable_and_query():
    m = make_model(**ASYMMETRIC)
    only_sim = SourceWeights(similar=1.0, session=1.0)
    full = score(m, 0, n=3, blend=0.0, sources=only_sim, exclude_query=False)
    assert 0 in ids(full)
    assert 0 not in ids(score(m, 0, n=3, blend=0.0, sources=only_sim))
    assert 3 not in ids(score(m, 0, n=3, blend=0.0, bought=[3]))
    assert 1 not in ids(score(m, 0, n=3, blend=0.0, shown=np.array([1])))
    unavailable = np.zeros(6, dtype=bool)
    unavailable[2] = True
    assert 2 not in ids(score(m, 0, n=6, blend=0.0, unavailable=unavailable))


def test_exclude_session_leaves_out_every_session_item():
    m = make_model(**ASYMMETRIC)
    rec = score(m, 0, n=6, blend=0.0, session_items=[3, 0], exclude_session=True)
    assert not {0, 3} & set(ids(rec))


def test_flags_do_not_leak_between_calls():
    """Regression: blocked items are flagged in a scratch array that must be cleared."""
    m = make_model(**ASYMMETRIC)
    score(m, 0, n=3, blend=0.0, bought=[3, 1])
    assert ids(score(m, 0, n=3, blend=0.0)) == [3, 1, 2]


def test_unknown_items_are_ignored_not_fatal():
    m = make_model(**ASYMMETRIC)
    rec = score(m, 0, [99, -1, 3], [5.0, 5.0, 5.0], n=3, blend=0.5,
                    session_items=[-1, 42, 0], bought=[-5, 1000])
    assert set(ids(rec)) <= set(range(6))
    assert len(ids(rec)) == 3


# ---------------------------------------------------------------------------
# Fall-backs
# ---------------------------------------------------------------------------

def test_unknown_query_falls_back_to_its_category_then_overall():
    m = make_model(**ASYMMETRIC, popularity=[1, 9, 3, 7, 5, 2], category=[0, 1, 0, 1, 0, -1])
    rec = score(m, -1, n=5, query_category=1)
    assert ids(rec) == [1, 3, 4, 2, 5]
    assert rec.strategy == "popular_category+popular"
    assert np.all(rec.scores < 0) and np.all(np.diff(rec.scores) < 0)
    rec = score(m, -1, n=2)
    assert ids(rec) == [1, 3] and rec.strategy == "popular"


def test_short_candidate_list_is_topped_up_without_repeats():
    m = make_model(**ASYMMETRIC, popularity=[1, 9, 3, 7, 5, 2], category=[0, 1, 0, 1, 0, -1])
    rec = score(m, 3, n=4, blend=0.0, bought=[4])
    # similar(3) = [1]; category of 3 is 1 -> {1, 3} (1 taken, 3 is the query); overall: 2, 5.
    assert ids(rec) == [1, 2, 5, 0]
    assert rec.strategy == "similar+popular"
    assert len(set(ids(rec))) == len(ids(rec))
    assert rec.scores[0] > 0 > rec.scores[1]


def test_popular_lists_per_category():
    m = make_model(popularity=[1, 9, 3, 7, 5, 2], category=[0, 1, 0, 1, 0, -1])
    assert popular_items(m).tolist() == [1, 3, 4, 2, 5, 0]
    assert popular_items(m, 0).tolist() == [4, 2, 0]
    assert popular_items(m, 7).tolist() == []


def test_unknown_query_with_known_session_items_folds_in_the_session():
    m = make_model(**ASYMMETRIC)
    rec = score(m, -1, [0], [5.0], n=2, blend=0.5, session_items=[0, -1])
    assert rec.strategy.startswith("session_fold_in")
    assert set(ids(rec)) <= {0, 1, 2, 3}
    rec = score(m, -1, n=2, blend=0.0, session_items=[0])
    assert rec.strategy == "session_similar"
    assert ids(rec) == [3, 1]


def test_history_without_candidates_ranks_popular_items_by_the_user_vector():
    y = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]], dtype=np.float32)
    m = make_model(n_items=4, factors=y)
    rec = score(m, 1, [1], [10.0], n=2, blend=0.5)
    assert rec.strategy == "session_fold_in"
    assert ids(rec) == [3, 0] or ids(rec)[0] == 3


def test_score_catalogue_user_items_and_ensemble():
    y = np.array([[1, 0], [0, 1], [1, 0.2], [0.2, 1]], dtype=np.float32)
    m = make_model(n_items=4, factors=y)
    liked = History(items=("i1",), confidence=(10.0,), last_ts_ms=(0,))
    rec, = score_catalogue(m, [(liked, Session(), "i1", None)], ScoringParams(n=2, blend=1.0))
    assert ids(rec) == [3, 2] and rec.strategy == "user_items"
    bought = History(items=("i1",), confidence=(10.0,), last_ts_ms=(0,), bought=("i1",))
    rec, = score_catalogue(m, [(bought, Session(), "i0", None)], ScoringParams(n=1, blend=0.1))
    assert ids(rec) == [2] and rec.strategy == "ensemble"
    rec, = score_catalogue(m, [(History(), Session(), None, None)], ScoringParams(n=2))
    assert rec.strategy == "popular"
    # One batch gives each request's own list.
    batch = [(liked, Session(), "i1", None), (bought, Session(), "i0", None)]
    params = ScoringParams(n=2, blend=0.1)
    assert [ids(r) for r in score_catalogue(m, batch, params)] == \
        [ids(score_catalogue(m, [r], params)[0]) for r in batch]


# ---------------------------------------------------------------------------
# Normalising and blending
# ---------------------------------------------------------------------------

def test_normalise_and_blend():
    assert normalise(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]
    assert normalise(np.array([2.0, 2.0])).tolist() == [1.0, 1.0]
    assert normalise(np.array([5.0, 1.0, 5.0]), "rank").tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        normalise(np.array([1.0]), "zscore")
    np.testing.assert_allclose(blend_scores(np.array([0.0, 1.0]), np.array([4.0, 2.0]), 0.25),
                               [0.25, 0.75])
    assert anchor_weights(3, 0.0).tolist() == [0.0, 0.0, 1.0]


def test_source_weights_are_checked():
    with pytest.raises(ValueError):
        SourceWeights(cooc=-1.0)
    with pytest.raises(ValueError):
        SourceWeights(next_decay=1.5)
    with pytest.raises(ValueError):
        ScoringParams(blend=2.0)


# ---------------------------------------------------------------------------
# State rules
# ---------------------------------------------------------------------------

def test_history_accumulates_confidence_like_the_batch_matrix():
    h = History()
    for ts in (0, 1, 2):
        h = add_to_history(h, "a", 1 + 15 * 0.25, ts, history_max=10)
    assert h.confidence == (1 + 15 * 0.75,)
    assert h.last_ts_ms == (2,)


def test_history_decays_the_excess_confidence():
    h = add_to_history(History(), "a", 9.0, 0, history_max=10, decay_half_life_s=10.0)
    h = add_to_history(h, "b", 3.0, 20_000, history_max=10, decay_half_life_s=10.0)
    assert h.confidence == (1.0 + 8.0 * 0.25, 3.0)
    # Time going backwards does not grow anything.
    h2 = add_to_history(h, "c", 2.0, 5_000, history_max=10, decay_half_life_s=10.0)
    assert h2.confidence[:2] == h.confidence


def test_history_keeps_the_strongest_then_most_recent():
    h = History()
    for i, (item, c) in enumerate([("a", 5.0), ("b", 2.0), ("c", 2.0), ("d", 9.0)]):
        h = add_to_history(h, item, c, i, history_max=3)
    assert h.items == ("a", "c", "d")


def _kept_by_sorting(items, conf, last, history_max):
    """The eviction rule written out: strongest, then most recent, first; ties keep order."""
    keep = sorted(range(len(items)), key=lambda i: (conf[i], last[i]), reverse=True)[:history_max]
    return [items[i] for i in sorted(keep)]


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from([1.5, 2.0, 4.75]),
                          st.integers(0, 3)), min_size=1, max_size=40),
       st.integers(1, 5))
def test_history_eviction_follows_the_rule(events, history_max):
    h = History()
    for item, c, ts in events:
        before = h
        h = add_to_history(h, item, c, ts, history_max=history_max)
        items, conf, last = list(before.items), list(before.confidence), list(before.last_ts_ms)
        if item in items:
            at = items.index(item)
            conf[at] += c - 1.0
            last[at] = max(last[at], ts)
        else:
            items, conf, last = items + [item], conf + [c], last + [ts]
        assert list(h.items) == _kept_by_sorting(items, conf, last, history_max)


def test_history_written_with_a_larger_bound_is_cut_to_the_new_one():
    h = History()
    for i, item in enumerate("abcdef"):
        h = add_to_history(h, item, 2.0 + i % 3, i, history_max=10)
    assert add_to_history(h, "g", 2.0, 9, history_max=3).items == ("c", "e", "f")


def test_history_round_trips_and_remembers_purchases():
    h = add_to_history(History(), "a", 4.0, 5, history_max=2, bought=True)
    h = add_to_history(h, "a", 4.0, 6, history_max=2, bought=True)
    assert h.bought == ("a",)
    assert History.from_dict(h.to_dict()) == h
    assert History.from_dict(None) == History()


def test_session_rules():
    s = Session()
    for item in "abca":
        s = add_to_session(s, item, max_len=3)
    assert s.items == ("b", "c", "a")
    s = add_shown(s, ["x", "y"], max_len=3)
    s = add_shown(s, ["y", "z"], max_len=3)
    assert s.shown == ("x", "y", "z")
    assert Session.from_dict(s.to_dict()) == s


def test_ids_and_history_arrays():
    m = make_model()
    assert to_indices(m, ["i3", "zz", "i0"]).tolist() == [3, -1, 0]
    items, conf = history_arrays(m, History(items=("zz", "i2"), confidence=(2.0, 3.0),
                                            last_ts_ms=(0, 0)))
    assert items.tolist() == [2] and conf.tolist() == [3.0]


def test_score_event_scores_the_state_in_model_indices():
    m = make_model(**ASYMMETRIC, category=[0, 1, 0, 1, 0, -1])
    params = ScoringParams(n=4, blend=0.3, sources=SourceWeights(similar=1.0, next=0.5, next_decay=0.5),
                           filter_shown=True)
    h = History()
    s = Session()
    for ts, item in enumerate(["i5", "i0"]):
        h = add_to_history(h, item, 4.75, ts, history_max=10)
        s = add_to_session(s, item, max_len=10)
    s = add_shown(s, ["i2"], max_len=10)
    got = score_event(m, h, s, "i0", params)
    # Session 5 then 0 (the query), item 2 shown and the query left out: the candidates are
    # 3 and 1 (similar to 0) and 5 (follows 0); category 0 of the query tops the list up.
    assert ids(got) == [3, 1, 5, 4] and got.strategy == "personalized_similar+popular_category"
    np.testing.assert_allclose(got.scores, [0.7, 17 / 45, 0.0, -0.5], rtol=1e-6)
    assert 2 not in ids(got)
    # An item the model does not know, with the event's category.
    assert score_event(m, History(), Session(), "new", params,
                       query_category="bags").strategy.startswith("popular_category")


def test_params_from_settings():
    from shared.config import load_settings
    p = ScoringParams.from_settings(load_settings({"RECSYS_BLEND": "0.2", "RECSYS_N": "7"}))
    assert p.blend == 0.2 and p.n == 7 and p.history_max == 100


def test_all_candidate_sources_off_is_refused():
    """Regression: every source at 0 crashed the scoring of each event."""
    from shared.config import ConfigError, load_settings
    with pytest.raises(ValueError, match="at least one candidate source"):
        SourceWeights(similar=0.0)
    with pytest.raises(ConfigError, match="RECSYS_SOURCE_.*at least one candidate source"):
        ScoringParams.from_settings(load_settings({f"RECSYS_SOURCE_{name}": "0" for name in
                                                   ("SIMILAR", "COOC", "NEXT", "SESSION")}))
