"""Candidates of a batch of lists: requests, their layout, gathering and merging.

A :class:`_Request` is one list to compute, in model indices (from a
shopper's state by :func:`_state_request`); :func:`_user_vectors` gives each
its user vector; :func:`_gather` reads every source's neighbour entries for
all requests at once (:func:`_layout` caches where each source's columns go)
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


def _layout(prep: _Prepared, sources: SourceWeights, width: int) -> tuple[list, np.ndarray | None]:
    """For ``width`` anchor columns: (list index, anchor weights or None: newest anchor only)
    per active source, and the source of each entry column (None for a single source)."""
    key = (sources, width)
    layout = prep.layouts.get(key)
    if layout is None:
        parts, sizes = [], []
        for s, _, decay in sources.active:
            rows = width if decay > 0 else 1
            parts.append((s, anchor_weights(sources.window, decay)[-rows:] if decay > 0 else None))
            sizes.append(rows * (prep.lists[s][0].shape[1] if s < len(prep.lists) else 1))
        columns = np.repeat(np.arange(len(sizes)), sizes) if len(sizes) > 1 else None
        layout = (parts, columns)
        if len(prep.layouts) < 256:
            prep.layouts[key] = layout
    return layout


def _gather(prep: _Prepared, requests: list[_Request],
            sources: SourceWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every source's entries for each request: items and weighted values, shape (B, C), and
    the source (position in ``sources.active``) of each column (None for a single source).

    Anchors are right-aligned (the missing ones are the dummy item, always
    blocked) and weighted from one table of ``window`` weights, so that a
    request's entries keep their values and order whatever the batch.
    """
    width = max(1, max(len(r.anchors) for r in requests)) if sources.decays else 1
    pad = [prep.n_items] * width
    anchors = np.array([(pad + r.anchors)[-width:] for r in requests], dtype=np.int64)
    parts, columns = _layout(prep, sources, width)
    items, values = [], []
    for s, weights in parts:
        rows = anchors[:, -1:] if weights is None else anchors
        if s < len(prep.lists):
            table, scores = prep.lists[s]
            cand, value = table[rows], scores[rows]
            if weights is not None:
                value = value * weights[:, None]
        else:  # the session's own items
            cand = rows
            value = np.ones(rows.shape) if weights is None else np.ones(rows.shape) * weights
        items.append(cand.reshape(len(requests), -1))
        values.append(value.reshape(len(requests), -1))
    if len(items) == 1:
        return items[0], values[0], None
    return np.concatenate(items, axis=1), np.concatenate(values, axis=1), columns


def _blocked_keys(prep: _Prepared, requests: list[_Request]) -> np.ndarray:
    """Merge keys (row × (n_items + 1) + item) of every request's blocked items and dummy item."""
    n_items = prep.n_items
    span = n_items + 1
    return np.array([row * span + item for row, r in enumerate(requests)
                     for item in (*r.blocked, n_items) if 0 <= item <= n_items], dtype=np.int64)


def _merge(prep: _Prepared, scratch: _Scratch, requests: list[_Request], items: np.ndarray,
           values: np.ndarray, columns: np.ndarray | None, n_sources: int,
           unavailable: np.ndarray | None) -> tuple[_Segments, np.ndarray, np.ndarray]:
    """The allowed candidates, one per (request, item), and their per-source sums.

    Returns segments (the request of each candidate), items and sums, shape
    (n_sources, n_candidates); a request's candidates keep the order of their
    last entry. Duplicates merge without sorting: every entry writes its
    position into the slot of its (request, item) and the last one owns it; a
    blocked item's slot is then overwritten with -1. An item's entries add up
    in column order, whatever else is in the batch.
    """
    n_rows = len(items)
    span = prep.n_items + 1
    keys = items + np.arange(0, n_rows * span, span)[:, None]
    flat = keys.ravel()
    slots = scratch.merge_slots(n_rows * span)
    position = np.arange(len(flat))
    slots[flat] = position
    slots[_blocked_keys(prep, requests)] = -1
    if unavailable is not None:
        slots[flat[np.append(unavailable, True)[items.ravel()]]] = -1
    unique = flat[slots[flat] == position]
    n = len(unique)
    slots[unique] = np.arange(n)
    bins = slots[keys] + 1  # 0 for the blocked entries, 1 + candidate otherwise
    if columns is not None:
        bins += columns * (n + 1)
    sums = np.bincount(bins.ravel(), weights=values.ravel(), minlength=n_sources * (n + 1))
    request = unique // span
    return (_Segments(request, n_rows), unique - request * span,
            sums.reshape(n_sources, n + 1)[:, 1:])
