"""What scoring computes once per model object, and the per-thread work arrays.

:class:`_Prepared` holds the popular lists, the neighbour table, YᵀY
and the fold-in's Woodbury tables of one model; :func:`prepare` /
:func:`_prepare` build it at most once per model (under a lock) and keep it in
a weak dictionary, so it is dropped with the model. :class:`_Scratch` is the
same idea per thread: block flags reused from list to list.
Both are caches keyed by the model object, which is why they live together.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
from scipy.linalg import solve_triangular

from shared.model import Model
from shared.scoring import kernels


class _Prepared:
    """What scoring needs from a model, computed once per model object."""

    def __init__(self, model: Model):
        n_items = model.n_items
        self.n_items = n_items
        pop = np.asarray(model.popularity, dtype=np.float64)
        # Most popular first; ties to the lower index.
        self.popular = np.lexsort((np.arange(n_items), -pop)).astype(np.int64)
        cat = np.asarray(model.item_category, dtype=np.int64)
        by_cat = self.popular[cat[self.popular] >= 0]
        cats = cat[by_cat]
        order = np.argsort(cats, kind="stable")
        by_cat, cats = by_cat[order], cats[order]
        bounds = np.flatnonzero(np.diff(cats)) + 1
        self.popular_in_category = {int(c[0]): part for c, part in
                                    zip(np.split(cats, bounds), np.split(by_cat, bounds)) if len(c)}
        self.item_category = cat
        self.category_index = {name: code for code, name in enumerate(np.asarray(model.categories).tolist())}
        self.item_factors = model.item_factors
        self.gram = model.gram
        self.gram32 = self.gram.astype(np.float32)
        # Y in float32 with a zero row at n_items: the padding of stacked fold-ins.
        self.item_factors32 = np.vstack([np.asarray(self.item_factors, dtype=np.float32),
                                         np.zeros((1, self.item_factors.shape[1]), np.float32)])
        self.regularization = model.regularization if "params" in model.meta else 0.0
        # Every source's neighbours of every item as one ragged table (:class:`_Neighbours`).
        self.neighbours = _Neighbours(n_items, ((model.similar_items, model.similar_scores),
                                                (model.cooc_items, model.cooc_scores),
                                                (model.next_items, model.next_scores)))
        self.woodbury = _woodbury_tables(self.item_factors, self.gram, self.regularization)
        # The longest history folded in through ``woodbury``: beyond, the k × k solve is cheaper.
        self.woodbury_max = 3 * self.item_factors.shape[1] // 4


class _Neighbours:
    """Each candidate source's entries (item, score) per anchor item, as one CSR table.

    Row ``s * (n_items + 1) + a`` holds source ``s``'s entries for anchor ``a``
    in the model's order: the neighbour lists of ``similar``, ``cooc`` and
    ``next`` without their padding (indices out of range), scores below 0
    raised to 0, and for the ``session`` source (``s`` = 3) the anchor
    itself with score 1. Row ``a = n_items`` of every source is empty: the
    anchor a request lacks. Reading only real entries, a request costs what
    its anchors' lists hold, not ``window`` × the lists' width.
    """

    def __init__(self, n_items: int, lists):
        span = n_items + 1
        counts, items, scores = [], [], []
        for table, values in lists:
            table = np.asarray(table, dtype=np.int64)
            valid = (table >= 0) & (table < n_items)
            counts.append(np.append(valid.sum(axis=1), 0))
            items.append(table[valid])
            scores.append(np.maximum(np.asarray(values, dtype=np.float64)[valid], 0.0))
        counts.append(np.append(np.ones(n_items, dtype=np.int64), 0))  # the session source
        items.append(np.arange(n_items, dtype=np.int64))
        scores.append(np.ones(n_items))
        self.span = span
        self.indptr = np.concatenate([[0], np.add.accumulate(np.concatenate(counts))])
        self.items = np.concatenate(items)
        self.scores = np.concatenate(scores)

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For table rows ``rows``: the number of entries of each, and the positions of all
        of them in :attr:`items` / :attr:`scores`, row after row."""
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        before = np.add.accumulate(counts) - counts
        return counts, np.arange(int(before[-1] + counts[-1]) if len(counts) else 0) + np.repeat(
            starts - before, counts)


def _woodbury_tables(item_factors: np.ndarray, gram: np.ndarray,
                     regularization: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, L⁻¹) for the batched fold-in, with YᵀY + λI = LLᵀ and W = YL⁻ᵀ plus a zero
    row (padding) at ``n_items``; None when λ <= 0."""
    if regularization <= 0:
        return None
    n_factors = gram.shape[0]
    try:
        chol = np.linalg.cholesky(gram + regularization * np.eye(n_factors))
    except np.linalg.LinAlgError:
        return None
    w = solve_triangular(chol, item_factors.T.astype(np.float64), lower=True).T
    return (np.vstack([w, np.zeros((1, n_factors))]),
            solve_triangular(chol, np.eye(n_factors), lower=True))


_prepared: weakref.WeakKeyDictionary[Model, _Prepared] = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()
_local = threading.local()


def prepare(model: Model) -> None:
    """Compute what scoring needs from ``model`` now (YᵀY, popular lists, neighbour tables)
    and have its compiled loops ready (:func:`shared.scoring.kernels.warm`).

    Otherwise the first list scored with the model pays for it; the worker
    calls this while loading a version, off the event path.
    """
    _prepare(model)
    kernels.warm()


def _prepare(model: Model) -> _Prepared:
    prep = _prepared.get(model)
    if prep is None:
        with _prepared_lock:
            prep = _prepared.get(model)
            if prep is None:
                prep = _prepared[model] = _Prepared(model)
    return prep


class _Scratch:
    """Per-thread work array of one model: block flags (reset after use)."""

    def __init__(self, n_items: int):
        self.flags = np.zeros(n_items + 1, dtype=bool)
        self.flags[n_items] = True  # the dummy item: no anchor, never recommended


def _scratch(model: Model, n_items: int) -> _Scratch:
    per_thread = getattr(_local, "scratch", None)
    if per_thread is None:
        per_thread = _local.scratch = weakref.WeakKeyDictionary()
    scratch = per_thread.get(model)
    if scratch is None:
        scratch = per_thread[model] = _Scratch(n_items)
    return scratch
