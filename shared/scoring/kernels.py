"""The compiled loops of the scoring path: merging candidates, the best ``k`` of each list,
normalising, and the blend.

A batch is scored as flat arrays with one run of entries per list (a
*segment*, given by ``starts`` and ``counts``). Each function here works
within one segment at a time, so a list's numbers never depend on the rest
of its batch; each sum runs over one list's own entries in their order, so a
batch gives the lists of its requests scored one by one, bit for bit.

These are loops over a list's few hundred candidates; written with numpy
they cost one pass of the whole batch per operation (a few dozen), here one
pass in all. They are compiled by numba on first use and cached beside this
file (``NUMBA_CACHE_DIR`` moves the cache); they release the GIL.
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: Normalisation codes of :func:`normalise` (see :data:`shared.scoring.params.NORMALISATIONS`).
MINMAX, RANK = 0, 1
NORMALISATION = {"minmax": MINMAX, "rank": RANK}


@njit(cache=True, nogil=True)
def merge(anchor_rows, anchor_columns, table_rows, anchor_weights, indptr, table_items,
          table_scores, n_rows, n_items, source_weights, blocked_indptr, blocked_items,
          unavailable, personal, pool):
    """The candidates of each request: gathered, merged, filtered, their similarity, and for
    a ``personal`` request the ``pool`` most similar.

    ``anchor_*`` are the requests' anchors (request ascending; the position of
    its source in ``source_weights``; its row in the neighbour table
    ``indptr``/``table_items``/``table_scores``; its weight). An entry's value
    is its table score times its anchor's weight; one candidate per (request,
    item) sums its values per source in entry order. Items in a request's
    ``blocked_items[blocked_indptr[r]:blocked_indptr[r + 1]]``, ``unavailable``
    ones (length ``n_items + 1``; the last is the dummy item) and items out of
    range are left out. Each source's sums are divided by their largest within
    the request (0 when that is not positive) and added up with the source
    weights, in source order: the similarity. A ``personal`` request with more
    than ``pool`` > 0 candidates keeps its ``pool`` most similar (ties to the
    lower item).

    Returns (the request of each candidate, ascending; its item; its
    similarity; each request's number of candidates before the pool).
    """
    n_sources = len(source_weights)
    n_entries = 0
    for a in range(len(table_rows)):
        n_entries += indptr[table_rows[a] + 1] - indptr[table_rows[a]]
    seg = np.empty(n_entries, dtype=np.int64)
    items = np.empty(n_entries, dtype=np.int64)
    sims = np.empty(n_entries, dtype=np.float64)
    sums = np.empty((n_sources, n_entries), dtype=np.float64)
    found = np.zeros(n_rows, dtype=np.int64)
    owner = np.full(n_items + 1, -1, dtype=np.int64)  # the request that last saw the item
    slot = np.empty(n_items + 1, dtype=np.int64)  # its candidate there; -1: left out
    scale = np.empty(n_sources, dtype=np.float64)
    out = 0
    a = 0
    for r in range(n_rows):
        for b in range(blocked_indptr[r], blocked_indptr[r + 1]):
            item = blocked_items[b]
            if 0 <= item <= n_items:
                owner[item] = r
                slot[item] = -1
        owner[n_items] = r
        slot[n_items] = -1
        first = out
        while a < len(anchor_rows) and anchor_rows[a] == r:
            column, weight = anchor_columns[a], anchor_weights[a]
            for e in range(indptr[table_rows[a]], indptr[table_rows[a] + 1]):
                item = table_items[e]
                if item < 0 or item > n_items:
                    continue
                if owner[item] != r:
                    owner[item] = r
                    if unavailable[item]:
                        slot[item] = -1
                    else:
                        slot[item] = out
                        seg[out] = r
                        items[out] = item
                        sums[:, out] = 0.0  # the place may have held a candidate cut by the pool
                        out += 1
                c = slot[item]
                if c >= 0:
                    sums[column, c] += table_scores[e] * weight
            a += 1
        count = out - first
        found[r] = count
        if count == 0:
            continue
        for s in range(n_sources):
            high = sums[s, first]
            for c in range(first + 1, out):
                if sums[s, c] > high:
                    high = sums[s, c]
            scale[s] = source_weights[s] / high if high > 0 else 0.0
        for c in range(first, out):
            sim = scale[0] * sums[0, c]
            for s in range(1, n_sources):
                sim = sim + scale[s] * sums[s, c]
            sims[c] = sim
        if personal[r] and 0 < pool < count:
            keep = _top_positions(items[first:out], sims[first:out], pool)
            kept_items = items[first:out][keep]
            kept_sims = sims[first:out][keep]
            out = first + len(keep)
            items[first:out] = kept_items
            sims[first:out] = kept_sims
    return seg[:out], items[:out], sims[:out], found


@njit(cache=True, nogil=True)
def _top_positions(items, scores, k):
    """Positions of the ``k`` best of ``scores`` (all when fewer), ties to the lower item, in
    position order."""
    m = len(scores)
    if m <= k:
        return np.arange(m)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(scores, m - k)[m - k]
    keep = np.zeros(m, dtype=np.bool_)
    room = k
    for i in range(m):
        if scores[i] > kth:
            keep[i] = True
            room -= 1
    if room > 0:
        tied = np.nonzero(scores == kth)[0]
        tied = tied[np.argsort(items[tied], kind="mergesort")]
        for i in tied[:room]:
            keep[i] = True
    return np.nonzero(keep)[0]


@njit(cache=True, nogil=True)
def best(starts, counts, items, scores, k):
    """Positions of the ``k`` best entries of each segment, segment by segment, best first
    (ties to the lower item)."""
    total = 0
    for r in range(len(starts)):
        total += min(counts[r], max(k, 0))
    out = np.empty(total, dtype=np.int64)
    filled = 0
    for r in range(len(starts)):
        start, count = starts[r], counts[r]
        chosen = _top_positions(items[start:start + count], scores[start:start + count], k)
        n = len(chosen)
        # insertion sort of the (few) chosen: score descending, then item ascending
        for i in range(n):
            p = chosen[i]
            j = i
            while j > 0 and _before(scores[start + p], items[start + p],
                                    scores[start + chosen[j - 1]], items[start + chosen[j - 1]]):
                chosen[j] = chosen[j - 1]
                j -= 1
            chosen[j] = p
        for i in range(n):
            out[filled + i] = start + chosen[i]
        filled += n
    return out


@njit(cache=True, nogil=True)
def _before(score, item, other_score, other_item):
    """Whether (score, item) ranks before (other_score, other_item); NaN last."""
    if score > other_score:
        return True
    if score == other_score:
        return item < other_item
    return other_score != other_score and score == score


@njit(cache=True, nogil=True)
def normalise(values, starts, counts, method):
    """``values`` mapped to [0, 1] within each segment (``MINMAX`` or ``RANK``; see
    :func:`shared.scoring.normalise`)."""
    out = np.empty(len(values), dtype=np.float64)
    for r in range(len(starts)):
        _normalise_into(values[starts[r]:starts[r] + counts[r]],
                        out[starts[r]:starts[r] + counts[r]], method)
    return out


@njit(cache=True, nogil=True)
def _normalise_into(values, out, method):
    m = len(values)
    if m == 0:
        return
    if method == MINMAX:
        low, high = values[0], values[0]
        for v in values[1:]:
            low = min(low, v)
            high = max(high, v)
        span = high - low
        for i in range(m):
            out[i] = (values[i] - low) / span if span > 0 else 1.0
        return
    ascending = np.sort(values)
    last = m - 1
    for i in range(m):
        # rank: how many rank strictly better (ties share the best rank)
        rank = m - np.searchsorted(ascending, values[i], side="right")
        out[i] = 1.0 - (rank / last if last > 0 else 0.0)


@njit(cache=True, nogil=True)
def mix(similarity, personal, blend):
    """The paper's blend of normalised scores (numbers or arrays)."""
    return (1.0 - blend) * similarity + blend * personal


@njit(cache=True, nogil=True)
def dot(factors, item, vector):
    """``factors[item] · vector`` in float64, the products summed in four lanes by factor
    position modulo 4, then (lane 0 + lane 1) + (lane 2 + lane 3): the same number on any
    machine and in any batch."""
    width = factors.shape[1]
    lane0 = lane1 = lane2 = lane3 = 0.0
    j = 0
    while j + 4 <= width:
        lane0 += np.float64(factors[item, j]) * np.float64(vector[j])
        lane1 += np.float64(factors[item, j + 1]) * np.float64(vector[j + 1])
        lane2 += np.float64(factors[item, j + 2]) * np.float64(vector[j + 2])
        lane3 += np.float64(factors[item, j + 3]) * np.float64(vector[j + 3])
        j += 4
    if j < width:
        lane0 += np.float64(factors[item, j]) * np.float64(vector[j])
    if j + 1 < width:
        lane1 += np.float64(factors[item, j + 1]) * np.float64(vector[j + 1])
    if j + 2 < width:
        lane2 += np.float64(factors[item, j + 2]) * np.float64(vector[j + 2])
    return (lane0 + lane1) + (lane2 + lane3)


@njit(cache=True, nogil=True)
def dots(factors, items, vector):
    """:func:`dot` of each of ``items`` with one vector."""
    out = np.empty(len(items), dtype=np.float64)
    for i in range(len(items)):
        out[i] = dot(factors, items[i], vector)
    return out


@njit(cache=True, nogil=True)
def blend_best(starts, counts, items, similarity, factors, vectors, personal, blend, method, k):
    """The best ``k`` of each segment by the blend, best first, and their blended scores.

    A ``personal`` segment ``r``'s score is ``(1 - blend) * norm(similarity)
    + blend * norm(personal)``, the personal score of an item being its
    :func:`dot` with ``vectors[r]``; another segment's is ``norm(similarity)``.
    """
    n = len(similarity)
    score = np.empty(n, dtype=np.float64)
    personal_scores = np.empty(n, dtype=np.float64)
    personal_norm = np.empty(n, dtype=np.float64)
    for r in range(len(starts)):
        start, end = starts[r], starts[r] + counts[r]
        _normalise_into(similarity[start:end], score[start:end], method)
        if personal[r]:
            for i in range(start, end):
                personal_scores[i] = dot(factors, items[i], vectors[r])
            _normalise_into(personal_scores[start:end], personal_norm[start:end], method)
            for i in range(start, end):
                score[i] = mix(score[i], personal_norm[i], blend)
    order = best(starts, counts, items, score, k)
    return order, score[order]


def warm() -> None:
    """Compile (or load from the cache) every loop here for the types scoring passes, so
    that no list pays for it: a fresh cache compiles for several seconds."""
    ints, no_ints = np.array([0, 1], dtype=np.int64), np.zeros(0, dtype=np.int64)
    floats = np.array([1.0, 0.5])
    factors, vectors = np.ones((3, 2), dtype=np.float32), np.ones((1, 2), dtype=np.float32)
    yes = np.ones(1, dtype=np.bool_)
    merge(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
          np.ones(1), np.array([0, 2], dtype=np.int64), ints, floats, 1, 2, np.ones(1),
          np.array([0, 0], dtype=np.int64), no_ints, np.zeros(3, dtype=np.bool_), yes, 1)
    starts, counts = np.zeros(1, dtype=np.int64), np.array([2], dtype=np.int64)
    for method in (MINMAX, RANK):
        normalise(floats, starts, counts, method)
        blend_best(starts, counts, ints, floats, factors, vectors, yes, 0.5, method, 1)
    best(starts, counts, ints, floats, 1)
    dots(factors, ints, vectors[0])
    mix(floats, floats, 0.5)
