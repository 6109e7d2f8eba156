"""The original project's protocol and the data sets' recorded figures and parameters.

:func:`evaluate_original` scores MAP@k of the original project's methods with
each test user's first event as the query (:func:`first_event_queries`).
For yoochoose-100k: the published figures on all positions
(:data:`YOOCHOOSE_PUBLISHED_ALL`) and what ``recsys evaluate --tune`` chose
there (:data:`YOOCHOOSE_PARAMS`, :data:`YOOCHOOSE_TRAINING`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import DIGITS, MAP_K, average_precision_at, coverage
from batch.evaluate.peers import session_order
from batch.evaluate.synthetic import _add_row
from shared.model import Model
from shared.scoring import (History, Recommendation, ScoringParams, Session, SourceWeights,
                            history_arrays, recommend, recommend_for_user, score_event)
from shared.signals import SignalWeights


def first_event_queries(train: EventColumns | None, test: EventColumns,
                        weights: SignalWeights, params: ScoringParams):
    """Each test user's first event (the query), their history and their truth.

    The history is the user's training events plus the query event, through
    the worker's update rule; the truth is the user's other test items.

    Yields
    ------
    (user id, query item id, History, Session, truth set)
    """
    order = session_order(test)
    by_user: dict[str, list[int]] = {}
    for row in order.tolist():
        by_user.setdefault(str(test.user_ids[test.user[row]]), []).append(row)
    past: dict[str, list[int]] = {}
    if train is not None:
        wanted = set(by_user)
        for row in session_order(train).tolist():
            uid = str(train.user_ids[train.user[row]])
            if uid in wanted:
                past.setdefault(uid, []).append(row)

    for uid, rows in by_user.items():
        query = str(test.item_ids[test.item[rows[0]]])
        truth = {str(test.item_ids[test.item[r]]) for r in rows[1:]} - {query}
        if not truth:
            continue
        history = History()
        for row in past.get(uid, []):
            history = _add_row(history, train, row, weights, params)
        history = _add_row(history, test, rows[0], weights, params)
        session = Session(items=(query,))
        yield uid, query, history, session, truth


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
    tuned = replace(params, n=k, exclude_query=True)
    for uid, query, history, session, truth in first_event_queries(train, test, weights, params):
        q = model.item_index.get(query, -1)
        items, conf = history_arrays(model, history)
        recs: dict[str, Recommendation] = {
            "similar": recommend(model, q, n=k, blend=0.0, sources=paper),
            "user_items": recommend_for_user(model, items, conf, n=k, exclude=[q]),
            "ensemble": recommend_for_user(model, items, conf, n=k, exclude=[q], similar_to=q,
                                           blend=0.5),
            "personalized_similar": recommend(model, q, items, conf, n=k,
                                              blend=params.blend if params.blend > 0 else 0.5,
                                              sources=paper),
            "tuned": score_event(model, history, session, query, tuned),
            "popularity": recommend(model, -1, n=k, exclude_query=True),
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


#: The data set README's figures for all 10,152 test positions of
#: yoochoose-100k (session-rec's own code, fit on train_full): HR@20, MRR@20.
YOOCHOOSE_PUBLISHED_ALL: dict[str, tuple[float, float]] = {
    "vsknn": (0.688, 0.367), "ar": (0.634, 0.326), "sr": (0.619, 0.352),
    "item-kNN": (0.399, 0.180), "session popularity": (0.381, 0.264), "most popular": (0.089, 0.026),
}

#: What ``recsys evaluate --tune`` chose on yoochoose-100k (fit on train_tr,
#: replay of train_valid; see :func:`tune`): the scoring parameters ...
YOOCHOOSE_PARAMS = ScoringParams(
    n=20, blend=0.1, normalisation="minmax", exclude_query=False,
    sources=SourceWeights(similar=0.25, cooc=0.25, next=0.5, session=6.0, similar_decay=0.0,
                          cooc_decay=0.6, next_decay=0.0, session_decay=0.35, window=20, pool=200))
#: ... and the training parameters.
YOOCHOOSE_TRAINING = {"alpha": 150.0, "factors": 32, "regularization": 0.1, "iterations": 15,
                      "similar_k": 100}
