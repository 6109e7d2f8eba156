"""Candidates of a batch of lists: requests, their layout, gathering and merging.

A :class:`_Request` is one list to compute, in model indices (from a
shopper's state by :func:`_state_request`); :func:`_user_vectors` gives each
its user vector; :func:`_gather` reads every source's neighbour entries for
all requests at once (each distinct anchor once, :func:`_anchor_entries`)
and :func:`_merge` turns them into one candidate per (request, item) with
per-source sums, blocked items removed. Everything between a shopper's state
and the candidates' raw sums is here.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shared.model import Model
from shared.scoring.foldin import _fold_in_batch
from shared.scoring.history import History, Session, _index_list, _known_history
from shared.scoring.params import ScoringParams, SourceWeights
from shared.scoring.prepared import _Prepared, _Scratch
from shared.scoring.segments import _Segments, anchor_weights


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


def _gather(prep: _Prepared, requests: list[_Request], sources: SourceWeights
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Every source's entries for each request, request after request: the request, item,
    weighted value and source (position in ``sources.active``; None for a single source) of
    each entry (:func:`_anchor_entries`, then the anchors' rows of :attr:`_Prepared.neighbours`).
    """
    table = prep.neighbours
    rows, positions, anchors, weights = _anchor_entries(requests, sources, prep.n_items)
    source = np.array([s for s, _, _ in sources.active])[positions]
    counts, entries = table.entries(source * table.span + anchors)
    values = table.scores[entries] * np.repeat(weights, counts)
    columns = np.repeat(positions, counts) if len(sources.active) > 1 else None
    return np.repeat(rows, counts), table.items[entries], values, columns


def _blocked_keys(prep: _Prepared, requests: list[_Request]) -> np.ndarray:
    """Merge keys (row × (n_items + 1) + item) of every request's blocked items and dummy item."""
    n_items = prep.n_items
    span = n_items + 1
    return np.array([row * span + item for row, r in enumerate(requests)
                     for item in (*r.blocked, n_items) if 0 <= item <= n_items], dtype=np.int64)


def _merge(prep: _Prepared, scratch: _Scratch, requests: list[_Request], rows: np.ndarray,
           items: np.ndarray, values: np.ndarray, columns: np.ndarray | None, n_sources: int,
           unavailable: np.ndarray | None) -> tuple[_Segments, np.ndarray, np.ndarray]:
    """The allowed candidates, one per (request, item), and their per-source sums.

    Takes :func:`_gather`'s entries. Returns segments (the request of each
    candidate), items and sums, shape (n_sources, n_candidates); a request's
    candidates keep the order of their last entry. Duplicates merge without
    sorting: every entry writes its position into the slot of its (request,
    item) and the last one owns it; a blocked item's slot is then overwritten
    with -1. An item's entries add up in entry order, whatever else is in the
    batch.
    """
    n_rows = len(requests)
    span = prep.n_items + 1
    keys = rows * span + items
    slots = scratch.merge_slots(n_rows * span)
    position = np.arange(len(keys))
    slots[keys] = position
    slots[_blocked_keys(prep, requests)] = -1
    if unavailable is not None:
        slots[keys[unavailable[items]]] = -1
    unique = keys[slots[keys] == position]
    n = len(unique)
    slots[unique] = np.arange(n)
    bins = slots[keys] + 1  # 0 for the blocked entries, 1 + candidate otherwise
    if columns is not None:
        bins += columns * (n + 1)
    sums = np.bincount(bins, weights=values, minlength=n_sources * (n + 1))
    request = unique // span
    return (_Segments(request, n_rows), unique - request * span,
            sums.reshape(n_sources, n + 1)[:, 1:])
