"""Each item's neighbours and the popularity fall-backs, as batched matrix operations.

Every neighbour list is a pair of arrays of shape (n_items, k): item indices
(int32, -1 pads) and scores (float32, 0 pads), best first; ties go to the
lower item index. Items are model indices (columns of the ``user_items``
matrix), and the input arrays hold one entry per event.

- :func:`similar_by_cosine`: cosine of ALS item factors (the candidates).
- :func:`cooccurrence_neighbours`: items in the same shopper sessions.
- :func:`sequence_neighbours`: items that follow the item within sessions.
- :func:`popularity`: the fall-backs' ranking; the most popular items of a
  category come from it and ``item_category`` (``shared.scoring``).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

#: Scores a dense block may hold at once (float32: 4 bytes each).
DENSE_BLOCK_ELEMENTS = 1 << 23
#: Multiply-adds a sparse matrix product may take at once.
SPARSE_BLOCK_WORK = 1 << 24
#: A sparse block with at least 1 / this of its cells stored is ranked as a dense array.
DENSE_ABOVE_DENSITY = 16


def similar_by_cosine(item_factors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items by cosine of their factor vectors, the item itself left out.

    Parameters
    ----------
    item_factors : ndarray, shape (n_items, n_factors)
    k : int

    Returns
    -------
    items : ndarray of int32, shape (n_items, k)
    scores : ndarray of float32, shape (n_items, k)
        Cosine similarity; an item with a zero vector scores 0 against all.

    Examples
    --------
    >>> y = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> items, scores = similar_by_cosine(y, 2)
    >>> items.tolist()
    [[1, 2], [0, 2], [1, 0]]
    """
    y = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    unit = y / np.where(norms > 0, norms, 1.0)
    n_items = len(unit)
    items, scores = _empty(n_items, k)
    block = max(1, DENSE_BLOCK_ELEMENTS // max(n_items, 1))
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        sims = unit[start:stop] @ unit.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        items[start:stop], scores[start:stop] = _top_k_dense(sims, k)
    return items, scores


def cooccurrence_neighbours(session: np.ndarray, item: np.ndarray, n_items: int,
                            k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items seen in the same shopper sessions, by session cosine.

    The score of j for i is the number of sessions with both, divided by
    sqrt(sessions with i * sessions with j): a session counts once however
    often it touched an item, and items in many sessions weigh less (like idf).

    Parameters
    ----------
    session : ndarray of int, shape (n_events,)
        Session code (>= 0) of each event.
    item : ndarray of int, shape (n_events,)
        Item index (0 <= item < n_items) of each event.
    n_items : int
    k : int

    Returns
    -------
    items : ndarray of int32, shape (n_items, k)
    scores : ndarray of float32, shape (n_items, k)

    Examples
    --------
    Sessions {0, 1}, {0, 1}, {0, 2}: item 1 is twice with 0, 2 once.

    >>> items, scores = cooccurrence_neighbours(
    ...     np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 0, 0, 2]), 3, 2)
    >>> items.tolist(), scores.astype(float).round(3).tolist()
    ([[1, 2], [0, -1], [0, -1]], [[0.816, 0.577], [0.816, 0.0], [0.577, 0.0]])
    """
    n_sessions = int(session.max()) + 1 if len(session) else 0
    item_sessions = _binary(item, session, (n_items, n_sessions))
    session_items = item_sessions.T.tocsr()
    in_sessions = np.diff(item_sessions.indptr).astype(np.float32)
    work = item_sessions @ np.diff(session_items.indptr).astype(np.float64)
    items, scores = _empty(n_items, k)
    for start, stop in _row_blocks(work):
        counts = (item_sessions[start:stop] @ session_items).tocsr()
        rows = _row_of_entries(counts) + start
        counts.data /= np.sqrt(in_sessions[rows] * in_sessions[counts.indices])
        counts.data[counts.indices == rows] = 0
        counts.eliminate_zeros()
        items[start:stop], scores[start:stop] = _top_k_sparse(counts, k)
    return items, scores


def sequence_neighbours(session: np.ndarray, item: np.ndarray, ts_ms: np.ndarray, n_items: int,
                        k: int, *, window: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items that follow the item within sessions ("sequential rules").

    Events are put in (session, time) order, repeats of the same item in a row
    merge into one step, and every later item b at most ``window`` steps after
    a adds 1 / steps to the rule a → b (Ludewig and Jannach's SR, summed over
    sessions). An item does not follow itself.

    Parameters
    ----------
    session, item, ts_ms : ndarray, shape (n_events,)
        Session code, item index (0 <= item < n_items) and time of each event;
        events at the same time keep their input order.
    n_items : int
    k : int
    window : int

    Returns
    -------
    items : ndarray of int32, shape (n_items, k)
    scores : ndarray of float32, shape (n_items, k)

    Examples
    --------
    One session 0 → 1 → 1 → 2: 0 → 1 (1 step), 0 → 2 (2 steps), 1 → 2 (1 step).

    >>> items, scores = sequence_neighbours(
    ...     np.zeros(4, dtype=int), np.array([0, 1, 1, 2]), np.arange(4), 3, 2)
    >>> items.tolist(), scores.tolist()
    ([[1, 2], [2, -1], [-1, -1]], [[1.0, 0.5], [1.0, 0.0], [0.0, 0.0]])
    """
    order = np.lexsort((ts_ms, session))
    session, item = session[order], item[order]
    step = np.ones(len(item), dtype=bool)
    step[1:] = (session[1:] != session[:-1]) | (item[1:] != item[:-1])
    session, item = session[step], item[step]
    follows = sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    for distance in range(1, window + 1):
        pair = (session[distance:] == session[:-distance]) & (item[distance:] != item[:-distance])
        before, after = item[:-distance][pair], item[distance:][pair]
        weight = np.full(len(before), 1.0 / distance, dtype=np.float32)
        follows = follows + sparse.coo_matrix((weight, (before, after)),
                                              shape=(n_items, n_items)).tocsr()
    return _top_k_sparse(follows, k)


def popularity(item: np.ndarray, n_items: int, *, ts_ms: np.ndarray | None = None,
               half_life_s: float = 0.0) -> np.ndarray:
    """Events per item, each weighted 0.5 ** (age / half-life) when a half-life is given.

    Parameters
    ----------
    item : ndarray of int, shape (n_events,)
    n_items : int
    ts_ms : ndarray of int, shape (n_events,), optional
        Needed when ``half_life_s`` > 0; age is measured from the newest event.
    half_life_s : float
        0 counts every event as 1.

    Returns
    -------
    ndarray of float32, shape (n_items,)

    Examples
    --------
    >>> popularity(np.array([0, 1, 1]), 3).tolist()
    [1.0, 2.0, 0.0]
    >>> popularity(np.array([0, 1]), 2, ts_ms=np.array([0, 10_000]), half_life_s=10).tolist()
    [0.5, 1.0]
    """
    weight = None
    if half_life_s > 0 and len(item):
        age_s = (ts_ms.max() - ts_ms) / 1000.0
        weight = np.exp2(-age_s / half_life_s)
    return np.bincount(item, weights=weight, minlength=n_items).astype(np.float32)


def _empty(n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_rows, k), -1, dtype=np.int32), np.zeros((n_rows, k), dtype=np.float32)


def _top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` largest scores of each row, best first, ties to the lower column.

    A score of -inf is no score: it comes out as a -1 pad.
    """
    n_rows, n_cols = scores.shape
    items, best = _empty(n_rows, k)
    kept = min(k, n_cols)
    if kept == 0:
        return items, best
    kth = -np.partition(-scores, kept - 1, axis=1)[:, kept - 1:kept]
    above, tied = scores > kth, scores == kth
    room = kept - np.count_nonzero(above, axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
    cols = np.nonzero(chosen)[1].reshape(n_rows, kept)  # exactly ``kept`` per row
    values = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -values), axis=1)
    cols, values = np.take_along_axis(cols, order, axis=1), np.take_along_axis(values, order, axis=1)
    present = values > -np.inf
    items[:, :kept] = np.where(present, cols, -1)
    best[:, :kept] = np.where(present, values, 0.0)
    return items, best


def _top_k_sparse(matrix: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` largest stored values of each row, best first, padded.

    Rows go in chunks of at most :data:`DENSE_BLOCK_ELEMENTS` cells; a chunk
    that is dense enough is ranked as a dense array (faster than sorting).
    """
    n_rows, n_cols = matrix.shape
    items, scores = _empty(n_rows, k)
    chunk = max(1, DENSE_BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, chunk):
        part = matrix[start:start + chunk]
        if part.nnz * DENSE_ABOVE_DENSITY >= part.shape[0] * n_cols:
            ranked = _top_k_dense(_dense_or_minus_inf(part), k)
        else:
            ranked = _top_k_sorted(part, k)
        items[start:start + chunk], scores[start:start + chunk] = ranked
    return items, scores


def _top_k_sorted(matrix: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = _row_of_entries(matrix)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    rank = np.arange(matrix.nnz) - matrix.indptr[rows]
    keep = rank < k
    items, scores = _empty(matrix.shape[0], k)
    items[rows[keep], rank[keep]] = matrix.indices[order[keep]]
    scores[rows[keep], rank[keep]] = matrix.data[order[keep]]
    return items, scores


def _dense_or_minus_inf(matrix: sparse.csr_matrix) -> np.ndarray:
    dense = np.full(matrix.shape, -np.inf, dtype=np.float32)
    dense[_row_of_entries(matrix), matrix.indices] = matrix.data
    return dense


def _row_of_entries(matrix: sparse.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """A 0/1 csr matrix with a 1 wherever some (row, col) pair occurs."""
    matrix = sparse.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                               shape=shape).tocsr()
    matrix.data[:] = 1.0
    return matrix


def _row_blocks(work: np.ndarray, budget: float = SPARSE_BLOCK_WORK) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges whose ``work`` adds up to at most ``budget`` (one row at least)."""
    total = np.cumsum(work)
    start = 0
    while start < len(work):
        done = total[start - 1] if start else 0
        stop = int(np.searchsorted(total, done + budget, side="right"))
        yield start, max(stop, start + 1)
        start = max(stop, start + 1)
