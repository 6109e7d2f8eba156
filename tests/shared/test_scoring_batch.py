"""score_events: request for request the lists of score_event, bit for bit, in any batch.

Two kinds of model: a trained one (synthetic shop, 16 factors, neighbour lists
that overlap between sources) with shoppers' states replayed from held-out
events, and tiny random ones whose lists hold repeats, ties and padding. The
parameters are drawn too: every source, decays, windows, pool, both
normalisations, the exclusions and filters.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.retrain import train_model
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.events import EVENT_TYPE_CODES
from shared.model import Model
from shared.scoring import (NORMALISATIONS, SOURCES, History, ScoringParams, Session, SourceWeights,
                            add_shown, add_to_history, add_to_session, fold_in_user, score_event,
                            score_events)
from shared.scoring.foldin import _fold_in_batch
from shared.scoring.prepared import _prepare
from shared.signals import SignalWeights

WEIGHTS = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25, add_to_cart=0.5,
                        buy=1.0, alpha=15.0)
ROWS = ("user", "session", "item", "type", "ts_ms", "dwell_ms")
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(got, want):
    assert got.items.tolist() == want.items.tolist()
    assert got.scores.dtype == want.scores.dtype and got.scores.tobytes() == want.scores.tobytes()
    assert got.strategy == want.strategy


def one_by_one(model, requests, params):
    return [score_event(model, h, s, q, params, query_category=c) for h, s, q, c in requests]


# ---------------------------------------------------------------------------
# A trained model and replayed states
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shop():
    """(model, requests): a model fit on 15,000 events and the states of the next 5,000."""
    columns, _ = generate_columns(20_000, seed=3, params=ShopParams(n_items=300, n_categories=12))
    train = dataclasses.replace(columns, **{name: getattr(columns, name)[:15_000] for name in ROWS})
    model = train_model(train, params=TrainingParams(weights=WEIGHTS, factors=16,
                                                     regularization=0.05, iterations=6,
                                                     similar_k=20, num_threads=1),
                        progress=False)
    histories, sessions, requests = {}, {}, []
    for row in range(15_000, len(columns)):
        user, session = columns.user[row], columns.session[row]
        item = str(columns.item_ids[columns.item[row]])
        r = WEIGHTS.preference_one(int(columns.type[row]), int(columns.dwell_ms[row]))
        history = histories.get(user, History())
        if r > 0:
            history = histories[user] = add_to_history(
                history, item, WEIGHTS.confidence(r), int(columns.ts_ms[row]), history_max=30,
                bought=columns.type[row] == EVENT_TYPE_CODES["buy"])
        state = sessions[session] = add_to_session(sessions.get(session, Session()), item,
                                                   max_len=12)
        if row % 3 == 0:  # some lists were shown
            sessions[session] = add_shown(state, model.item_ids[row % 50:row % 50 + 5].tolist(),
                                          max_len=12)
        category = str(columns.categories[columns.item_category[columns.item[row]]])
        requests.append((history, sessions[session], item, category))
    return model, requests


@st.composite
def scoring_params(draw, window=st.integers(1, 8)):
    weights = {name: draw(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0])) for name in SOURCES}
    if not any(weights.values()):
        weights[draw(st.sampled_from(SOURCES))] = 1.0
    decays = {f"{name}_decay": draw(st.sampled_from([0.0, 0.0, 0.4, 1.0])) for name in SOURCES}
    sources = SourceWeights(**weights, **decays, window=draw(window),
                            pool=draw(st.sampled_from([0, 2, 5, 15, 200])))
    return ScoringParams(n=draw(st.integers(1, 25)), blend=draw(st.sampled_from([0.0, 0.3, 1.0])),
                         sources=sources, normalisation=draw(st.sampled_from(NORMALISATIONS)),
                         exclude_query=draw(st.booleans()), exclude_session=draw(st.booleans()),
                         filter_bought=draw(st.booleans()), filter_shown=draw(st.booleans()))


def pick(draw, requests, size):
    """``size`` requests: runs of consecutive events (one shopper's states side by side)
    and repeats of the same request."""
    out = []
    while len(out) < size:
        start = draw(st.integers(0, len(requests) - 1))
        out.extend(requests[start:start + draw(st.integers(1, 4))])
        if draw(st.booleans()):
            out.append(out[-1])
    return out[:size]


@EXAMPLES
@given(data=st.data(), params=scoring_params())
def test_batch_equals_one_by_one_on_a_trained_model(shop, data, params):
    model, requests = shop
    batch = pick(data.draw, requests, data.draw(st.integers(1, 40)))
    for got, want in zip(score_events(model, batch, params), one_by_one(model, batch, params),
                         strict=True):
        assert_same(got, want)


@EXAMPLES
@given(data=st.data(), params=scoring_params())
def test_a_list_does_not_depend_on_its_batch(shop, data, params):
    model, requests = shop
    batch = pick(data.draw, requests, data.draw(st.integers(2, 60)))
    whole = score_events(model, batch, params)
    order = data.draw(st.permutations(range(len(batch))))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(batch) - 1), max_size=4)))
    for part in np.split(np.array(order), cuts):
        got = score_events(model, [batch[i] for i in part], params)
        for i, rec in zip(part, got, strict=True):
            assert_same(rec, whole[i])


def test_the_default_path_covers_the_paper_strategies(shop):
    """The replayed states reach the strategies the tests above claim to cover."""
    model, requests = shop
    strategies = {rec.strategy for rec in score_events(model, requests[:2000], ScoringParams())}
    assert {"personalized_similar", "popular_category"} <= {
        name for strategy in strategies for name in strategy.split("+")}
    strategies = {rec.strategy for rec in score_events(
        model, [(History(), Session(requests[i][1].items), "unknown-item", None)
                for i in range(200)], ScoringParams(sources=SourceWeights(similar_decay=0.5)))}
    assert "session_similar" in strategies


def test_a_pool_that_cuts_every_list_leaves_each_as_scored_alone(shop):
    """With a pool smaller than every list, a list's candidates that the pool drops make no
    difference to the lists after it in the batch."""
    model, requests = shop
    params = ScoringParams(sources=SourceWeights(cooc=1.0, cooc_decay=0.5, session=1.0, pool=8))
    batch = requests[:300]
    for got, request in zip(score_events(model, batch, params), batch, strict=True):
        assert_same(got, score_events(model, [request], params)[0])


def _normal_equations(model, items, confidence) -> np.ndarray:
    """x_u solved from (YᵀC_uY + λI) x = YᵀC_u p_u as written, in float64."""
    y = model.item_factors[items].astype(np.float64)
    c = np.asarray(confidence, dtype=np.float64)
    a = model.gram + (y.T * (np.abs(c) - 1.0)) @ y + model.regularization * np.eye(y.shape[1])
    return np.linalg.solve(a, y.T @ np.where(c > 0, c, 0.0))


def test_batched_fold_in_solves_the_normal_equations(shop):
    """Short histories go through the Woodbury identity in float64: x_u to rounding. Longer
    ones (and |c| < 1) solve fold_in_user's k × k equations in float32, stacked: x_u to
    about 1e-6, and as close to fold_in_user's own solve."""
    model, _ = shop
    prep = _prepare(model)
    assert prep.woodbury_max == 12
    rng = np.random.default_rng(5)
    histories = [(rng.choice(model.n_items, h, replace=False).tolist(),
                  (1.0 + 15.0 * rng.random(h)).tolist()) for h in (1, 2, 7, 8, 9, 12, 13, 40, 100)]
    histories.append(([3, 4], [0.5, 2.0]))  # |c| < 1: the k × k solve
    histories.append(([], []))
    got = _fold_in_batch(prep, histories)
    assert got[-1] is None
    for (items, confidence), x in zip(histories[:-1], got[:-1]):
        want = _normal_equations(model, items, confidence)
        if len(items) <= prep.woodbury_max and min(confidence) >= 1.0:
            np.testing.assert_allclose(x, want, rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_allclose(x, want, rtol=0, atol=1e-5 * np.abs(want).max())
            alone = fold_in_user(model.item_factors, items, confidence,
                                 regularization=model.regularization)
            np.testing.assert_allclose(x, alone, rtol=0, atol=1e-5 * np.abs(want).max())


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 20), min_size=1, max_size=30),
       seed=st.integers(0, 2**32 - 1))
def test_a_folded_in_vector_does_not_depend_on_its_batch(shop, lengths, seed):
    """Bit for bit, in float64: the stacks must not let one history change another's rounding."""
    prep = _prepare(shop[0])
    rng = np.random.default_rng(seed)
    histories = [(rng.choice(prep.n_items, h, replace=False).tolist(),
                  (1.0 + 15.0 * rng.random(h)).tolist()) for h in lengths]
    for together, (items, confidence) in zip(_fold_in_batch(prep, histories), histories):
        alone = _fold_in_batch(prep, [(items, confidence)])[0]
        assert (together is None and alone is None) or together.tobytes() == alone.tobytes()


# ---------------------------------------------------------------------------
# Tiny random models: repeats, ties and padding in the lists
# ---------------------------------------------------------------------------

N_ITEMS = 12
IDS = [f"i{i}" for i in range(N_ITEMS)] + ["zz", "yy"]  # two ids no model knows


@st.composite
def tiny_models(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    width = draw(st.integers(1, 5))

    def lists():
        items = rng.integers(-1, N_ITEMS + 2, (N_ITEMS, width)).astype(np.int32)
        return items, rng.choice([0.0, 0.5, 1.0, 2.0], (N_ITEMS, width)).astype(np.float32)

    (s, ss), (c, cs), (f, fs) = lists(), lists(), lists()
    return Model(
        version="tiny", item_ids=np.array(IDS[:N_ITEMS]),
        item_factors=rng.choice([-1.0, 0.0, 0.5, 1.0], (N_ITEMS, 4)).astype(np.float32),
        similar_items=s, similar_scores=ss, cooc_items=c, cooc_scores=cs, next_items=f,
        next_scores=fs, popularity=rng.integers(0, 4, N_ITEMS).astype(np.float32),
        item_category=rng.integers(-1, 3, N_ITEMS).astype(np.int32),
        categories=np.array(["a", "b", "c"]),
        meta={"params": {"regularization": draw(st.sampled_from([0.0, 0.1, 1.0]))}})


@st.composite
def tiny_requests(draw):
    history = History()
    for ts, item in enumerate(draw(st.lists(st.sampled_from(IDS), max_size=8))):
        history = add_to_history(history, item, draw(st.sampled_from([1.0, 2.5, 16.0])), ts * 1000,
                                 history_max=6, bought=draw(st.booleans()))
    session = Session(tuple(draw(st.lists(st.sampled_from(IDS), max_size=6))),
                      tuple(draw(st.lists(st.sampled_from(IDS), max_size=4))))
    query = draw(st.sampled_from(IDS))
    if draw(st.booleans()):
        session = add_to_session(session, query, max_len=6)
    return history, session, query, draw(st.sampled_from([None, "a", "c", "nope"]))


@EXAMPLES
@given(model=tiny_models(), batch=st.lists(tiny_requests(), min_size=1, max_size=12),
       params=scoring_params(window=st.integers(1, 4)), data=st.data())
def test_tiny_models_batch_equals_one_by_one_in_any_split(model, batch, params, data):
    batch = batch + [batch[0]]
    want = one_by_one(model, batch, params)
    for got, expected in zip(score_events(model, batch, params), want, strict=True):
        assert_same(got, expected)
    cut = data.draw(st.integers(1, len(batch) - 1))
    for got, expected in zip(score_events(model, batch[cut:], params) +
                             score_events(model, batch[:cut], params),
                             want[cut:] + want[:cut], strict=True):
        assert_same(got, expected)


def test_an_empty_batch_gives_no_lists(shop):
    assert score_events(shop[0], [], ScoringParams()) == []


def test_pool_ties_go_to_the_lower_index():
    """Three candidates equally similar, pool 2: the personal score may lift only items 1 and 2."""
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    m = Model(version="t", item_ids=np.array(["i0", "i1", "i2", "i3"]), item_factors=y,
              similar_items=np.array([[3, 2, 1]] * 4, dtype=np.int32),
              similar_scores=np.full((4, 3), 0.5, dtype=np.float32),
              cooc_items=np.full((4, 1), -1, np.int32), cooc_scores=np.zeros((4, 1), np.float32),
              next_items=np.full((4, 1), -1, np.int32), next_scores=np.zeros((4, 1), np.float32),
              popularity=np.ones(4, np.float32), item_category=np.zeros(4, np.int32),
              categories=np.array(["a"]), meta={"params": {"regularization": 0.1}})
    rec = score_event(m, History(), Session(), "i0",
                      ScoringParams(n=3, blend=0.9, sources=SourceWeights(pool=2)),
                      user_factors=np.array([0.0, 5.0]))
    assert rec.items.tolist() == [2, 1, 3] and rec.scores[2] < 0  # 3 only as a fall-back
    assert rec.strategy.startswith("personalized_similar+")
