"""Real-time fold-in against stale batch user vectors on the synthetic shop with ground truth."""
import numpy as np
import pytest

from batch.evaluate import (batch_user_factors, fit, realtime_markdown, realtime_vs_stale,
                            replay_next_item, split_by_time, user_histories)
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.config import load_settings
from shared.scoring import ScoringParams, SourceWeights

EVENTS = 40_000
SEED = 3
SHOP = ShopParams(n_items=2_000, n_categories=20)


@pytest.fixture(scope="module")
def settings():
    return load_settings({"RECSYS_ALS_FACTORS": "16", "RECSYS_ALS_ITERATIONS": "8"})


@pytest.fixture(scope="module")
def result(settings):
    return realtime_vs_stale(EVENTS, seed=SEED, shop=SHOP, settings=settings)


def test_real_time_beats_stale_for_visitors_without_a_batch_vector(result):
    groups = result["groups"]
    assert groups["returning"]["realtime"]["positions"] > 500
    assert groups["anonymous_or_new"]["realtime"]["positions"] > 500
    new = groups["anonymous_or_new"]
    # Stale: no personal vector at all, so the lists follow the similar items
    # only; real time folds the session's own events in.
    assert new["realtime"]["preferred@20"] > new["stale"]["preferred@20"] + 0.01
    assert new["difference"]["preferred@20"] == pytest.approx(
        new["realtime"]["preferred@20"] - new["stale"]["preferred@20"], abs=1e-4)
    # Only the stale variant scores visitors without a personal score.
    assert result["strategies"]["stale"].get("similar", 0) > 0
    assert result["strategies"]["realtime"].get("similar", 0) < result["strategies"]["stale"]["similar"]
    # The groups partition all positions.
    assert (groups["returning"]["stale"]["positions"] + new["stale"]["positions"]
            == groups["all"]["stale"]["positions"])
    p = result["params"]
    assert (p["n_events"], p["seed"], p["train_events"] + p["test_events"]) == (EVENTS, SEED, EVENTS)
    assert p["returning_users"] > 0
    table = realtime_markdown(result)
    assert "| returning | stale |" in table and "| anonymous_or_new | difference |" in table


def test_stale_vectors_stay_fixed_while_real_time_ones_move(settings):
    """Personal score only (blend 1, no filters): a list is the query item's
    similar items ranked by the user's vector alone, so one user's lists for
    one query item can change only when the user's vector does."""
    columns, _ = generate_columns(EVENTS, seed=SEED, params=SHOP)
    train, test = split_by_time(columns, 0.8)
    training = TrainingParams.from_settings(settings)
    model = fit(train, training)
    params = ScoringParams(n=20, blend=1.0, sources=SourceWeights(similar=1.0, pool=0),
                           exclude_query=False, filter_bought=False, filter_shown=False)
    weights = training.weights
    start = user_histories(train, weights, params)
    stale = batch_user_factors(model, start)
    assert stale
    # (session id, position) -> (user id, query item id)
    query_of = {}
    for code in np.unique(test.session).tolist():
        rows = np.flatnonzero(test.session == code)
        rows = rows[np.argsort(test.ts_ms[rows], kind="stable")]
        for position, row in enumerate(rows.tolist()):
            query_of[(str(test.session_ids[code]), position)] = (
                str(test.user_ids[test.user[row]]), str(test.item_ids[test.item[row]]))
    lists = {}
    for name, fixed in (("realtime", None), ("stale", stale)):
        replay = replay_next_item(model, test, params, weights, start_histories=start,
                                  user_factors=fixed)
        by_query: dict[tuple, set] = {}
        for key, items in zip(replay.keys, replay.lists):
            by_query.setdefault(query_of[key], set()).add(tuple(items))
        lists[name] = by_query
    # Returning users' positions on items the model knows (an unknown query
    # item takes the session's previous item as its anchor instead).
    known = [k for k in lists["realtime"] if k[0] in stale and k[1] in model.item_index]
    assert len(known) > 100
    # Stale: one list per returning user and query item, whatever they did since.
    assert all(len(lists["stale"][k]) == 1 for k in known)
    # Real time: the same user and query item get other lists after new events.
    moved = sum(len(lists["realtime"][k]) > 1 for k in known)
    assert moved > 10
