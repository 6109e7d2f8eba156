"""Exact next-item and original-protocol metrics of ranked lists.

:func:`rank_of` (a target's rank in a list), :func:`metrics_from_ranks`
(HR@k, MRR@k, NDCG@k from the targets' ranks), :func:`average_precision_at`
(AP@k of the original protocol), :func:`coverage` (the share of the
catalogue listed), and the constants :data:`KS`, :data:`MAP_K` and
:data:`DIGITS` that the rest of :mod:`batch.evaluate` reports with.
"""
from __future__ import annotations

import numpy as np

#: List lengths the next-item metrics are reported at.
KS: tuple[int, ...] = (1, 5, 10, 20)
#: The original project's list length.
MAP_K = 3
#: Digits kept in reported metrics.
DIGITS = 4


def rank_of(target, items) -> int:
    """1-based rank of ``target`` in ``items``; 0 when absent.

    Examples
    --------
    >>> rank_of("b", ["a", "b"]), rank_of("z", ["a", "b"])
    (2, 0)
    """
    for position, item in enumerate(items, 1):
        if item == target:
            return position
    return 0


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """HR@k, MRR@k and NDCG@k of one-target positions from the target's rank.

    A rank of 0 (not listed) or above k counts as a miss at k and stays in
    the denominator. With one relevant item NDCG@k = 1 / log2(rank + 1).

    Parameters
    ----------
    ranks : ndarray of int
        1-based rank of each position's target, 0 when absent.
    ks : iterable of int

    Returns
    -------
    dict
        ``hr@k``, ``mrr@k``, ``ndcg@k`` for each k, and ``positions``.

    Examples
    --------
    >>> m = metrics_from_ranks(np.array([2, 0]), ks=(1, 2))
    >>> m["hr@1"], m["hr@2"], m["mrr@2"], round(m["ndcg@2"], 4), m["positions"]
    (0.0, 0.5, 0.25, 0.3155, 2)
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {"positions": int(len(ranks))}
    count = max(len(ranks), 1)
    for k in ks:
        hit = (ranks > 0) & (ranks <= k)
        out[f"hr@{k}"] = round(float(hit.sum()) / count, DIGITS)
        out[f"mrr@{k}"] = round(float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).sum()) / count,
                                DIGITS)
        gains = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)
        out[f"ndcg@{k}"] = round(float(gains.sum()) / count,
                                 DIGITS)
    return out


def average_precision_at(recommended, truth, k: int = MAP_K) -> float:
    """AP@k: the mean of precision@i over the hits i <= k, divided by min(k, |truth|).

    Examples
    --------
    >>> round(average_precision_at(["a", "x", "b"], {"a", "b"}, 3), 4)
    0.8333
    >>> average_precision_at(["x"], {"a"}, 3), average_precision_at(["a"], set(), 3)
    (0.0, 0.0)
    """
    truth = set(truth)
    if not truth:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for i, item in enumerate(list(recommended)[:k], 1):
        if item in truth and item not in seen:
            hits += 1
            total += hits / i
        seen.add(item)
    return total / min(k, len(truth))


def coverage(lists, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue that appears in at least one list (top ``k`` of each).

    Examples
    --------
    >>> coverage([["a", "b"], ["b", "c"]], 4), coverage([["a", "b"], ["b", "c"]], 4, k=1)
    (0.75, 0.5)
    """
    seen = set()
    for items in lists:
        seen.update(items[:k] if k else items)
    return round(len(seen) / n_items, DIGITS) if n_items else 0.0
