"""From merged candidates to a :class:`Recommendation`: similarity, blend, best ``n`` and fall-backs.

:func:`_rank` scores a batch of requests in chunks of rows that fit
:data:`shared.scoring.MERGE_SLOTS`: the similarity of each candidate, the
personal score of the ``pool`` most similar ones and their blend, then
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

import shared.scoring as _package  # MERGE_SLOTS is read from the package at call time
from shared.model import Model
from shared.scoring.candidates import _gather, _merge, _Request, _user_vectors
from shared.scoring.example import _example_model  # noqa: F401  (the examples' model)
from shared.scoring.params import ScoringParams, SourceWeights
from shared.scoring.prepared import _prepare, _Prepared, _Scratch, _scratch
from shared.scoring.segments import _best, _mix, _normalise, _Segments, _top, _top_mask, normalise

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


def _similarity(segments: _Segments, sums: np.ndarray, sources: SourceWeights) -> np.ndarray:
    """Each source's sums divided by their largest in the request, added up with the source
    weights (in the order of the sources)."""
    top = segments.extreme(np.maximum, sums)
    scale = np.divide(sources.active_weights, top, out=np.zeros(top.shape), where=top > 0)
    terms = scale[:, segments.seg] * sums
    sim = terms[0]
    for term in terms[1:]:
        sim = sim + term
    return sim


def _personal(prep: _Prepared, items: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x_u · y_i for ``items``, in float32 like the factors."""
    return _dots(prep, items, vector.astype(np.float32)[None, :])


def _dots(prep: _Prepared, items: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``y_items[j] · vectors[j]`` for each j (``vectors`` float32, one row per item or one
    for all), each over the factors in their order: the same number whatever else is
    computed beside it."""
    factors = prep.item_factors32[items]
    return np.einsum("ij,ij->i", factors, np.broadcast_to(vectors, factors.shape))


def _blended(prep: _Prepared, segments: _Segments, items: np.ndarray, sim: np.ndarray,
             vectors: list, params: ScoringParams) -> tuple[_Segments, np.ndarray, np.ndarray]:
    """The candidates the personal score re-ranks (``pool``) and their blended score.

    The personal score of a candidate is one dot product of its factors and its
    request's vector (:func:`_dots`): the same numbers in any batch.
    """
    personal = [v is not None for v in vectors]
    if not any(personal):
        return segments, items, _normalise(sim, segments, params.normalisation)
    pool = params.sources.pool
    if 0 < pool < np.maximum.reduce(segments.counts):
        keep = _top_mask(segments, items, sim, pool)
        if not all(personal):
            keep |= ~np.array(personal)[segments.seg]
        segments, items, sim = segments.subset(keep), items[keep], sim[keep]
    stacked = np.zeros((len(vectors), prep.item_factors32.shape[1]), dtype=np.float32)
    for row, vector in enumerate(vectors):
        if vector is not None:
            stacked[row] = vector
    dots = _dots(prep, items, stacked[segments.seg]).astype(np.float64)
    if params.normalisation == "minmax":  # both rows in one pass, each on its own
        score, personal_score = _normalise(np.stack([sim, dots]), segments, "minmax")
    else:
        score = _normalise(sim, segments, params.normalisation)
        personal_score = _normalise(dots, segments, params.normalisation)
    mixed = _mix(score, personal_score, params.blend)
    if not all(personal):
        mixed = np.where(np.array(personal)[segments.seg], mixed, score)
    return segments, items, mixed


def _rank(model: Model, prep: _Prepared, requests: list[_Request], params: ScoringParams,
          unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request (see :mod:`shared.scoring`), in chunks of rows that fit
    :data:`shared.scoring.MERGE_SLOTS`."""
    rows = max(1, _package.MERGE_SLOTS // (prep.n_items + 1))
    scratch = _scratch(model, prep.n_items)
    return [rec for start in range(0, len(requests), rows)
            for rec in _rank_rows(model, prep, scratch, requests[start:start + rows], params,
                                  unavailable)]


def _rank_rows(model: Model, prep: _Prepared, scratch: _Scratch, requests: list[_Request],
               params: ScoringParams, unavailable: np.ndarray | None) -> list[Recommendation]:
    vectors = _user_vectors(prep, requests, params.blend)
    segments, items, sums = _merge(prep, scratch, requests,
                                   *_gather(prep, requests, params.sources),
                                   len(params.sources.active), unavailable)
    found = (segments.counts > 0).tolist()
    if len(items):
        segments, items, score = _blended(prep, segments, items,
                                          _similarity(segments, sums, params.sources), vectors,
                                          params)
        order = _best(segments, items, score, params.n)
        items, score = items[order], score[order].astype(np.float32)
        ends = np.add.accumulate(np.bincount(segments.seg[order], minlength=len(requests))).tolist()
    else:
        score, ends = np.zeros(0, dtype=np.float32), [0] * len(requests)
    return [_finish(model, prep, r, params, v, f, items[start:end], score[start:end], unavailable)
            for r, v, f, start, end in zip(requests, vectors, found, [0] + ends, ends)]


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
