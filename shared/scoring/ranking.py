"""From candidates to a :class:`Recommendation`: personal scores, blend, best ``n`` and fall-backs.

:func:`_rank` scores a batch of requests: the candidates and their
similarity (:func:`shared.scoring.candidates._candidates`), the personal
score of the ``pool`` most similar ones, their blend and the best ``n``
(:func:`shared.scoring.kernels.blend_best`), then
:func:`_finish` completes each list with the popular items re-ranked by the
user's vector and the fall-backs (:func:`_fill`, :func:`popular_items`),
never recommending a :class:`_Blocked` item. This is the whole ranking rule
of :func:`shared.scoring.score_events`, in one place; the ranking of the whole
catalogue (:mod:`shared.scoring.catalogue`) shares its blocked items and
fall-backs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.model import Model
from shared.scoring import kernels
from shared.scoring.candidates import _candidates, _Request, _user_vectors
from shared.scoring.example import _example_model  # noqa: F401  (the examples' model)
from shared.scoring.params import ScoringParams
from shared.scoring.prepared import _prepare, _Prepared, _Scratch, _scratch
from shared.scoring.segments import _top, normalise

#: Popular items the ``session_fold_in`` path re-ranks when no neighbour gives candidates.
FOLD_IN_POOL = 1000


@dataclass(frozen=True, eq=False)
class Recommendation:
    """A ranked list: model item indices, their scores (best first) and the path used.

    Attributes
    ----------
    items : ndarray of int64, shape (m,), m <= n
    scores : ndarray of float32, shape (m,)
        In [0, 1] for candidates; negative for fall-back items.
    strategy : str
    """

    items: np.ndarray
    scores: np.ndarray
    strategy: str

    def item_ids(self, model: Model) -> list[str]:
        """The external ids of :attr:`items`."""
        return model.item_ids[self.items].tolist()


def _personal(prep: _Prepared, items: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x_u · y_i for ``items`` (:func:`shared.scoring.kernels.dot`, x_u in float32 like the
    factors)."""
    return kernels.dots(prep.item_factors32, np.ascontiguousarray(items, dtype=np.int64),
                        vector.astype(np.float32))


def _rank(model: Model, prep: _Prepared, requests: list[_Request], params: ScoringParams,
          unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request (see :mod:`shared.scoring.api`)."""
    if not requests:
        return []
    vectors = _user_vectors(prep, requests, params.blend)
    personal = np.array([v is not None for v in vectors], dtype=bool)
    seg, items, similarity, found = _candidates(prep, requests, params.sources, personal,
                                                unavailable)
    if len(items):
        counts = np.bincount(seg, minlength=len(requests))
        starts = np.add.accumulate(counts) - counts
        stacked = np.zeros((len(vectors), prep.item_factors32.shape[1]), dtype=np.float32)
        for row, vector in enumerate(vectors):
            if vector is not None:
                stacked[row] = vector
        order, score = kernels.blend_best(starts, counts, items, similarity, prep.item_factors32,
                                          stacked, personal, params.blend,
                                          kernels.NORMALISATION[params.normalisation], params.n)
        items, score = items[order], score.astype(np.float32)
        ends = np.add.accumulate(np.bincount(seg[order], minlength=len(requests))).tolist()
    else:
        score, ends = np.zeros(0, dtype=np.float32), [0] * len(requests)
    return [_finish(model, prep, r, params, v, f > 0, items[start:end], score[start:end],
                    unavailable)
            for r, v, f, start, end in zip(requests, vectors, found.tolist(), [0] + ends, ends)]


def _strategy(query: int, personal: bool) -> str:
    if query >= 0:
        return "personalized_similar" if personal else "similar"
    return "session_fold_in" if personal else "session_similar"


def _finish(model: Model, prep: _Prepared, request: _Request, params: ScoringParams,
            vector: np.ndarray | None, found: bool, items: np.ndarray, scores: np.ndarray,
            unavailable: np.ndarray | None) -> Recommendation:
    """A request's list from its best candidates (``found``: it had any): without them the
    popular items ranked by its vector, then the fall-backs for what is left of ``n``."""
    if found and len(items) >= params.n:
        return Recommendation(items, scores, _strategy(request.query, vector is not None))
    parts_items, parts_scores, names = [], [], []
    if found:
        parts_items.append(items)
        parts_scores.append(scores)
        names.append(_strategy(request.query, vector is not None))
    with _Blocked(_scratch(model, prep.n_items), prep.n_items, (request.blocked,),
                  unavailable) as blocked:
        if not found and vector is not None:
            pool = prep.popular[:FOLD_IN_POOL]
            pool = pool[blocked.allowed(pool)]
            if len(pool):
                personal = _personal(prep, pool, vector)
                top_items, top_scores = _top(pool, normalise(personal, params.normalisation),
                                             params.n)
                parts_items.append(top_items)
                parts_scores.append(top_scores)
                names.append("session_fold_in")
        chosen = parts_items[0] if parts_items else np.zeros(0, dtype=np.int64)
        if len(chosen) < params.n:
            fill, fill_names = _fill(prep, chosen, params.n, request.category, blocked)
            if fill:
                count = sum(len(f) for f in fill)
                parts_items.extend(fill)
                parts_scores.append(-np.arange(1, count + 1, dtype=np.float64) / (count + 1))
                names.extend(fill_names)
    if not parts_items:
        return Recommendation(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32),
                              "popular")
    return Recommendation(np.concatenate(parts_items).astype(np.int64),
                          np.concatenate(parts_scores).astype(np.float32), "+".join(names))


class _Blocked:
    """Items that may not be recommended, flagged in the scratch array while in use."""

    def __init__(self, scratch: _Scratch, n_items: int, groups, unavailable: np.ndarray | None):
        arrays = []
        for group in groups:
            if group is None:
                continue
            if isinstance(group, (set, frozenset)):
                group = list(group)
            group = np.asarray(group, dtype=np.int64).ravel()
            if len(group):
                arrays.append(group)
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        self.items = items[(items >= 0) & (items < n_items)]
        self.unavailable = unavailable
        self.flags = scratch.flags

    def __enter__(self) -> _Blocked:
        self.flags[self.items] = True
        return self

    def __exit__(self, *exc) -> None:
        self.flags[self.items] = False

    def allowed(self, items: np.ndarray) -> np.ndarray:
        """True for each of ``items`` (indices <= n_items) that may be recommended."""
        keep = ~self.flags[items]
        if self.unavailable is not None:
            keep[keep] = ~self.unavailable[items[keep]]
        return keep


def _fill(prep: _Prepared, chosen: np.ndarray, n: int, category: int,
          blocked: _Blocked) -> tuple[list[np.ndarray], list[str]]:
    """Fall-back items (popular in category, then overall) for the ``n - len(chosen)`` free slots."""
    parts, names = [], []
    taken = chosen
    need = n - len(chosen)
    pools = (("popular_category", prep.popular_in_category.get(category) if category >= 0 else None),
             ("popular", prep.popular))
    for name, pool in pools:
        if need <= 0 or pool is None or len(pool) == 0:
            continue
        got, start, size = [], 0, need + len(taken) + len(blocked.items)
        while need > 0 and start < len(pool):
            head = pool[start:start + size]
            keep = blocked.allowed(head)
            if len(taken):
                keep &= ~np.isin(head, taken)
            picked = head[keep][:need]
            if len(picked):
                got.append(picked)
                taken = np.concatenate([taken, picked])
                need -= len(picked)
            start += size
            size *= 2
        if got:
            parts.append(np.concatenate(got))
            names.append(name)
    return parts, names


def popular_items(model: Model, category: int = -1) -> np.ndarray:
    """All items of ``category`` (or all items when -1), most popular first.

    Computed once per model. Ties go to the lower index.

    Examples
    --------
    >>> m = _example_model()
    >>> popular_items(m).tolist(), popular_items(m, 1).tolist()
    ([3, 0, 1, 2], [3, 2])
    """
    prep = _prepare(model)
    if category < 0:
        return prep.popular
    return prep.popular_in_category.get(int(category), np.zeros(0, dtype=np.int64))
