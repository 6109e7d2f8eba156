"""The original project's protocol.

:func:`evaluate_original` scores MAP@k of the original project's methods with
each test user's first event as the query (:func:`first_event_queries`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import DIGITS, MAP_K, average_precision_at, coverage
from batch.evaluate.peers import session_order
from batch.evaluate.replay import state_rule
from shared.model import Model
from shared.scoring import (History, Recommendation, Request, ScoringParams, Session, SourceWeights,
                            score_catalogue, score_events)
from shared.signals import SignalWeights
from shared.state import UserState, apply_event


def first_event_queries(train: EventColumns | None, test: EventColumns,
                        weights: SignalWeights, params: ScoringParams):
    """Each test user's first event (the query), their history and their truth.

    The history is the user's training events plus the query event, through
    the worker's update rule; the truth is the user's other test items.

    Yields
    ------
    (user id, query item id, History, Session, truth set)
    """
    rule = state_rule(weights, params)
    order = session_order(test)
    by_user: dict[str, list[int]] = {}
    for row in order.tolist():
        by_user.setdefault(str(test.user_ids[test.user[row]]), []).append(row)
    # Each wanted user's training events, applied in one pass over the training log.
    states: dict[str, UserState] = {}
    if train is not None:
        wanted = set(by_user)
        names = train.user_ids.astype(str)
        past = [row for row in session_order(train).tolist() if names[train.user[row]] in wanted]
        for event in train.events(past, id_prefix="train"):
            states[event.user_id] = apply_event(event, states.get(event.user_id), rule)
    queries = test.events([rows[0] for rows in by_user.values()], id_prefix="test")

    for (uid, rows), query_event in zip(by_user.items(), queries):
        query = query_event.item_id
        truth = {str(test.item_ids[test.item[r]]) for r in rows[1:]} - {query}
        if not truth:
            continue
        state = apply_event(query_event, states.get(uid), rule)
        session = Session(items=(query,))
        yield uid, query, state.history, session, truth


def evaluate_original(model: Model, train: EventColumns | None, test: EventColumns,
                      weights: SignalWeights, params: ScoringParams, k: int = MAP_K) -> dict:
    """MAP@k of the original project's methods; every list comes from :mod:`shared.scoring`.

    Methods: ``similar`` (ALS-similar items of the query), ``user_items``
    (x_u · y over the catalogue), ``ensemble`` (0.5 / 0.5 of both over the
    catalogue), ``personalized_similar`` (the paper: similar items re-ranked
    with the configured blend), ``tuned`` (the given scoring parameters) and
    ``popularity``. The query item itself is never recommended.
    """
    paper = SourceWeights()
    methods = ("similar", "user_items", "ensemble", "personalized_similar", "tuned", "popularity")
    ap = {m: [] for m in methods}
    lists = {m: [] for m in methods}
    # The original methods leave out the query item only, not the items bought.
    original = ScoringParams(n=k, filter_bought=False)
    similar = replace(original, blend=0.0, sources=paper)
    personalized = replace(original, blend=params.blend if params.blend > 0 else 0.5,
                           sources=paper)
    user_items, ensemble = replace(original, blend=1.0), replace(original, blend=0.5)
    tuned = replace(params, n=k, exclude_query=True)
    nobody = Request(History(), Session(), None)  # no query item, no history: popularity
    for _, query, history, session, truth in first_event_queries(train, test, weights, params):
        shopper = Request(history, session, query)
        item_alone = Request(History(), session, query)
        recs: dict[str, Recommendation] = {
            "similar": score_events(model, [item_alone], similar)[0],
            "user_items": score_catalogue(model, [shopper], user_items)[0],
            "ensemble": score_catalogue(model, [shopper], ensemble)[0],
            "personalized_similar": score_events(model, [shopper], personalized)[0],
            "tuned": score_events(model, [shopper], tuned)[0],
            "popularity": score_events(model, [nobody], original)[0],
        }
        for name, rec in recs.items():
            ids = rec.item_ids(model)
            ap[name].append(average_precision_at(ids, truth, k))
            lists[name].append(ids)
    out = {"users": len(ap["similar"]), "k": k, "methods": {}}
    for name in methods:
        out["methods"][name] = {
            f"map@{k}": round(float(np.mean(ap[name])) if ap[name] else 0.0, DIGITS),
            "coverage": coverage(lists[name], model.n_items)}
    return out
