"""The compiled loops of shared.scoring.kernels against the rules written plainly, per list.

Scores come from a few values, so that ties (and their rule: the lower
item first) are common; items blocked, unavailable or out of range, empty
lists and the pool all occur.
"""
from __future__ import annotations

import numpy as np
import pytest

from shared.scoring import kernels

N_ITEMS = 30


def _table(rng, n_rows: int):
    """A neighbour table: row -> (items, scores), some items out of range, scores tied."""
    lists = []
    for _ in range(n_rows):
        width = int(rng.integers(0, 8))
        items = rng.choice(np.arange(-1, N_ITEMS + 2), width, replace=False)
        lists.append((items, rng.choice([0.25, 0.5, 1.0, 2.0], width)))
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in lists])]).astype(np.int64)
    items = np.concatenate([i for i, _ in lists]).astype(np.int64)
    scores = np.concatenate([s for _, s in lists]).astype(np.float64)
    return lists, indptr, items, scores


def _merge_plainly(anchors, lists, weights, blocked, unavailable, personal, pool):
    """Per request: (its candidates after the pool as sorted (item, similarity) pairs, how
    many there were before it); sums per (item, source) in entry order."""
    out = []
    for r, request_anchors in enumerate(anchors):
        sums: dict[int, list[float]] = {}
        for column, row, weight in request_anchors:
            for item, score in zip(*lists[row]):
                item = int(item)
                if not 0 <= item < N_ITEMS or item in blocked[r] or unavailable[item]:
                    continue
                sums.setdefault(item, [0.0] * len(weights))[column] += score * weight
        if not sums:
            out.append(([], 0))
            continue
        top = [max(s[c] for s in sums.values()) for c in range(len(weights))]
        scale = [w / t if t > 0 else 0.0 for w, t in zip(weights, top)]
        similarity = {}
        for item, s in sums.items():
            value = scale[0] * s[0]
            for c in range(1, len(weights)):
                value = value + scale[c] * s[c]
            similarity[item] = value
        ranked = sorted(similarity.items(), key=lambda pair: (-pair[1], pair[0]))
        out.append((sorted(ranked[:pool] if personal[r] and 0 < pool else ranked), len(ranked)))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_merge_sums_filters_and_pools_each_list_on_its_own(seed):
    rng = np.random.default_rng(seed)
    n_requests, n_sources = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    lists, indptr, table_items, table_scores = _table(rng, 12)
    weights = rng.choice([0.5, 1.0, 3.0], n_sources)
    anchors = [[(int(rng.integers(n_sources)), int(rng.integers(12)), float(rng.choice([1.0, 0.5])))
                for _ in range(int(rng.integers(0, 5)))] for _ in range(n_requests)]
    blocked = [set(rng.choice(N_ITEMS + 1, int(rng.integers(0, 4))).tolist())
               for _ in range(n_requests)]
    unavailable = np.zeros(N_ITEMS + 1, dtype=bool)
    unavailable[rng.choice(N_ITEMS, 3)] = True
    unavailable[N_ITEMS] = True
    personal = rng.random(n_requests) < 0.6
    pool = int(rng.integers(0, 6))
    flat = [(r, *a) for r, request_anchors in enumerate(anchors) for a in request_anchors]
    rows = np.array([a[0] for a in flat], dtype=np.int64)
    blocked_lists = [np.array(sorted(b), dtype=np.int64) for b in blocked]
    blocked_indptr = np.concatenate([[0], np.cumsum([len(b) for b in blocked_lists])])

    seg, items, similarity, found = kernels.merge(
        rows, np.array([a[1] for a in flat], dtype=np.int64),
        np.array([a[2] for a in flat], dtype=np.int64), np.array([a[3] for a in flat]),
        indptr, table_items, table_scores, n_requests, N_ITEMS, weights,
        blocked_indptr.astype(np.int64), np.concatenate(blocked_lists).astype(np.int64),
        unavailable, personal, pool)

    want = _merge_plainly(anchors, lists, weights, blocked, unavailable, personal, pool)
    assert (np.diff(seg) >= 0).all()
    for r in range(n_requests):
        mine = seg == r
        got = sorted(zip(items[mine].tolist(), similarity[mine].tolist()))
        assert got == want[r][0]  # the same floats: sums in entry order, sources in order
    assert found.tolist() == [n for _, n in want]


def _rank_plainly(values):
    m = len(values)
    return [1.0 - (sum(w > v for w in values) / (m - 1) if m > 1 else 0.0) for v in values]


def _minmax_plainly(values):
    low, high = min(values), max(values)
    return [(v - low) / (high - low) if high > low else 1.0 for v in values]


def _segments(rng, n: int):
    counts = rng.integers(0, 9, n).astype(np.int64)
    return np.cumsum(counts) - counts, counts


@pytest.mark.parametrize("seed", range(30))
def test_normalise_best_and_blend_work_within_each_segment(seed):
    rng = np.random.default_rng(100 + seed)
    starts, counts = _segments(rng, int(rng.integers(1, 6)))
    total = int(counts.sum())
    items = np.concatenate([rng.choice(N_ITEMS, c, replace=False) for c in counts]).astype(np.int64)
    similarity = rng.choice([0.0, 0.25, 0.5, 1.0], total)
    factors = rng.choice([-1.0, 0.0, 1.0], (N_ITEMS, 5)).astype(np.float32)
    vectors = rng.choice([-1.0, 0.5, 1.0], (len(starts), 5)).astype(np.float32)
    personal = rng.random(len(starts)) < 0.5
    k, blend = int(rng.integers(0, 5)), 0.3

    for method, plainly in ((kernels.MINMAX, _minmax_plainly), (kernels.RANK, _rank_plainly)):
        normalised = kernels.normalise(similarity, starts, counts, method)
        order, scores = kernels.blend_best(starts, counts, items, similarity, factors, vectors,
                                           personal, blend, method, k)
        picked = kernels.best(starts, counts, items, similarity, k)
        position = 0
        for r, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
            segment = slice(start, start + count)
            if count:
                assert normalised[segment].tolist() == plainly(similarity[segment].tolist())
            best_first = sorted(range(start, start + count),
                                key=lambda i: (-similarity[i], items[i]))[:k]
            assert picked[position:position + len(best_first)].tolist() == best_first
            mixed = list(normalised[segment])
            if personal[r] and count:
                dots = [float(np.dot(factors[i].astype(np.float64), vectors[r].astype(np.float64)))
                        for i in items[segment]]
                mixed = [(1.0 - blend) * s + blend * p for s, p in zip(mixed, plainly(dots))]
            ranked = sorted(range(count), key=lambda i: (-mixed[i], items[start + i]))[:k]
            assert order[position:position + len(ranked)].tolist() == [start + i for i in ranked]
            assert scores[position:position + len(ranked)].tolist() == [mixed[i] for i in ranked]
            position += len(best_first)
        assert position == len(order) == len(picked)


def test_dot_sums_in_four_lanes_whatever_the_width():
    rng = np.random.default_rng(3)
    for width in (1, 2, 3, 4, 5, 7, 8, 32, 33):
        factors = rng.standard_normal((4, width)).astype(np.float32)
        vector = rng.standard_normal(width).astype(np.float32)
        products = factors[2].astype(np.float64) * vector.astype(np.float64)
        lanes = [sum(products[j::4].tolist(), 0.0) for j in range(4)]
        assert kernels.dot(factors, 2, vector) == (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
