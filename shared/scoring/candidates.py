"""Candidates of a batch of lists: requests, their layout, gathering and merging.

A :class:`_Request` is one list to compute, in model indices (from a
shopper's state by :func:`_state_request`); :func:`_user_vectors` gives each
its user vector; :func:`_candidates` lays out every request's anchors per
source (each distinct anchor once, :func:`_anchor_entries`) and has
:func:`shared.scoring.kernels.merge` read their neighbour entries and turn
them into one candidate per (request, item) with its similarity, blocked
items removed. Everything between a shopper's state and the candidates'
similarity is here.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shared.model import Model
from shared.scoring.foldin import _fold_in_batch
from shared.scoring.history import History, Session, _index_list, _known_history
from shared.scoring.params import ScoringParams, SourceWeights
from shared.scoring import kernels
from shared.scoring.prepared import _Prepared
from shared.scoring.segments import anchor_weights


class _Request(NamedTuple):
    """One list to compute, in model indices (:func:`_request`)."""

    query: int  # -1: unknown to the model
    category: int  # the query item's, else the event's (-1: none)
    items: list  # the history's items the model knows, and their confidence
    confidence: list
    anchors: list  # known session items and the query item, newest last, at most ``window``
    blocked: list  # items never recommended (unknown ones are ignored)
    user_factors: np.ndarray | None  # a fixed vector; None: fold in ``items``


def _request(prep: _Prepared, params: ScoringParams, query: int, category: int, items: list,
             confidence: list, session: list, bought: list, shown: list,
             user_factors: np.ndarray | None) -> _Request:
    """A :class:`_Request` from model indices (lists of int; -1 or out of range: unknown)."""
    n_items = prep.n_items
    if 0 <= query < n_items:
        category = int(prep.item_category[query])
    else:
        query = -1
    anchors = session
    if query >= 0 and (not session or session[-1] != query):
        anchors = session + [query]
    anchors = [a for a in anchors if 0 <= a < n_items][-params.sources.window:]
    blocked = bought + shown
    if params.exclude_query and query >= 0:
        blocked.append(query)
    if params.exclude_session:
        blocked += session
    return _Request(query, category, items, confidence, anchors, blocked, user_factors)


def _state_request(model: Model, prep: _Prepared, params: ScoringParams, history: History,
                   session: Session, query_item, query_category: str | None,
                   user_factors: np.ndarray | None = None) -> _Request:
    """A :class:`_Request` from a shopper's state (external ids)."""
    items, confidence = _known_history(model, history)
    return _request(prep, params, model.item_index.get(query_item, -1),
                    prep.category_index.get(query_category, -1), items, confidence,
                    _index_list(model, session.items),
                    _index_list(model, history.bought) if params.filter_bought else [],
                    _index_list(model, session.shown) if params.filter_shown else [],
                    user_factors)


def _user_vectors(prep: _Prepared, requests: list[_Request],
                  blend: float) -> list[np.ndarray | None]:
    """x_u of each request: its fixed vector, else folded in; None without one or when
    ``blend`` is 0."""
    if blend <= 0:
        return [None] * len(requests)
    vectors = [r.user_factors if r.user_factors is not None and np.any(r.user_factors) else None
               for r in requests]
    fold = [i for i, r in enumerate(requests) if r.user_factors is None]
    folded = _fold_in_batch(prep, [(requests[i].items, requests[i].confidence) for i in fold])
    for i, x in zip(fold, folded):
        vectors[i] = x
    return vectors


def _anchor_entries(requests: list[_Request], sources: SourceWeights,
                    n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each request's anchors per active source, row after row: (request, source position in
    ``sources.active``, anchor item, weight).

    A source without decay has the newest anchor alone, weight 1. A source
    with decay has each distinct anchor once, weighing the sum of
    ``decay ** k`` over the steps ``k`` at which it occurs before the newest:
    its entries' sums are those of one entry per occurrence, and a session
    that comes back to an item costs no more. Within a request, anchors come
    by source, then by item, and each weight adds up the request's own
    occurrences oldest first, so that nothing depends on the rest of the batch.
    """
    width = max(1, max(len(r.anchors) for r in requests)) if sources.decays else 1
    pad = [n_items] * width
    anchors = np.array([(pad + r.anchors)[-width:] for r in requests], dtype=np.int64)
    n_rows = len(requests)
    span = n_items + 1
    parts: list[tuple[np.ndarray, ...]] = []
    if sources.decays:
        keys = (anchors + np.arange(0, n_rows * span, span)[:, None]).ravel()
        order = keys.argsort(kind="stable")
        ordered = keys[order]
        first = np.empty(len(ordered), dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        distinct = ordered[first]
        inverse = np.empty(len(keys), dtype=np.int64)
        inverse[order] = np.add.accumulate(first) - 1
        distinct_rows = distinct // span
        distinct_items = distinct - distinct_rows * span
        column = np.arange(len(keys)) % width
    for position, (_, _, decay) in enumerate(sources.active):
        if decay <= 0:
            parts.append((np.arange(n_rows), np.full(n_rows, position), anchors[:, -1],
                          np.ones(n_rows)))
            continue
        weights = anchor_weights(sources.window, decay)[-width:][column]
        summed = np.bincount(inverse, weights=weights, minlength=len(distinct))
        parts.append((distinct_rows, np.full(len(distinct), position), distinct_items, summed))
    rows, positions, items, weights = (np.concatenate(column) for column in zip(*parts))
    order = np.argsort(rows, kind="stable")
    return rows[order], positions[order], items[order], weights[order]


def _candidates(prep: _Prepared, requests: list[_Request], sources: SourceWeights,
                personal: np.ndarray, unavailable: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The allowed candidates of each request and their similarity (steps 2 to 4 of
    :mod:`shared.scoring.api`; for a ``personal`` request, the ``pool`` most similar).

    Every source's entries are read from the anchors' rows of
    :attr:`_Prepared.neighbours` (:func:`_anchor_entries`) and merged in
    :func:`shared.scoring.kernels.merge`: one candidate per (request, item),
    its sums per source in entry order. Returns (the request of each
    candidate, ascending; its item; its similarity; each request's number of
    candidates).
    """
    table = prep.neighbours
    rows, positions, anchors, weights = _anchor_entries(requests, sources, prep.n_items)
    source = np.array([s for s, _, _ in sources.active])[positions]
    blocked = [np.asarray(r.blocked, dtype=np.int64) for r in requests]
    blocked_indptr = np.zeros(len(requests) + 1, dtype=np.int64)
    np.add.accumulate([len(b) for b in blocked], out=blocked_indptr[1:])
    flags = np.zeros(prep.n_items + 1, dtype=bool)
    if unavailable is not None:
        flags[:prep.n_items] = unavailable[:prep.n_items]
    return kernels.merge(rows, positions, source * table.span + anchors, weights, table.indptr,
                         table.items, table.scores, len(requests), prep.n_items,
                         sources.active_weights, blocked_indptr,
                         np.concatenate(blocked) if blocked else np.zeros(0, dtype=np.int64),
                         flags, personal, sources.pool)
