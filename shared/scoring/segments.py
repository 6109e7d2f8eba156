"""Normalising, blending and the best ``n``, per segment of flat arrays (one segment per list).

A batch is scored as flat arrays with one run of entries per list;
:class:`_Segments` describes the runs and every function here works within
each run only, so that a list's numbers do not depend on the rest of its
batch. The public :func:`normalise`, :func:`blend_scores` and
:func:`anchor_weights` are the one-segment cases of the same maths.
"""
from __future__ import annotations

import numpy as np

import shared.scoring as _package  # _SORT_ALL is read from the package at call time
from shared.scoring.params import NORMALISATIONS


class _Segments:
    """The segment (list) of each entry of flat arrays: ascending, so that each is one run."""

    def __init__(self, seg: np.ndarray, n: int):
        self.seg = seg
        self.n = n
        self.counts = np.bincount(seg, minlength=n)
        self.starts = np.add.accumulate(self.counts) - self.counts
        self.complete = bool(np.logical_and.reduce(self.counts))

    @classmethod
    def single(cls, length: int) -> _Segments:
        """One segment of ``length`` entries."""
        return cls(np.zeros(length, dtype=np.int64), 1)

    def subset(self, keep: np.ndarray) -> _Segments:
        """The segments of the entries ``keep`` selects."""
        return _Segments(self.seg[keep], self.n)

    def extreme(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        """``np.maximum`` or ``np.minimum`` of each segment along the last axis of ``values``
        (0 for an empty segment)."""
        if self.complete:
            return ufunc.reduceat(values, self.starts, axis=-1)
        out = np.zeros(values.shape[:-1] + (self.n,))
        filled = self.counts > 0
        if filled.any():
            out[..., filled] = ufunc.reduceat(values, self.starts[filled], axis=-1)
        return out


def normalise(scores: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Scores mapped to [0, 1] within the given candidates.

    ``minmax``: (s - min) / (max - min), all 1 when every score is equal.
    ``rank``: 1 for the best, falling linearly to 0 for the worst (ties share
    their best rank), all 1 for a single candidate.

    Examples
    --------
    >>> normalise(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    >>> normalise(np.array([2.0, 9.0, 9.0, 3.0]), "rank").round(3).tolist()
    [0.0, 1.0, 1.0, 0.333]
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; use one of {NORMALISATIONS}")
    scores = np.asarray(scores, dtype=np.float64)
    return _normalise(scores, _Segments.single(len(scores)), method)


def _normalise(values: np.ndarray, segments: _Segments, method: str) -> np.ndarray:
    """:func:`normalise` within each segment, along the last axis of ``values`` (``minmax``
    takes several rows at once, each on its own; ``rank`` one row)."""
    seg = segments.seg
    if method == "minmax":
        low = segments.extreme(np.minimum, values)[..., seg]
        span = segments.extreme(np.maximum, values)[..., seg] - low
        return np.divide(values - low, span, out=np.ones(values.shape), where=span > 0)
    order = np.lexsort((-values, seg))
    ranked = values[order]
    tie_start = np.ones(len(values), dtype=bool)
    tie_start[1:] = (ranked[1:] != ranked[:-1]) | (seg[1:] != seg[:-1])
    position = np.arange(len(values))
    rank = np.empty(len(values))
    rank[order] = np.maximum.accumulate(np.where(tie_start, position, 0)) - segments.starts[seg]
    last = (segments.counts - 1)[seg]
    return 1.0 - np.divide(rank, last, out=np.zeros_like(rank), where=last > 0)


def _mix(similarity: np.ndarray, personal: np.ndarray, blend: float) -> np.ndarray:
    return (1.0 - blend) * similarity + blend * personal


def blend_scores(similarity: np.ndarray, personal: np.ndarray | None, blend: float,
                 normalisation: str = "minmax") -> np.ndarray:
    """The paper's blend: ``(1 - blend) * norm(similarity) + blend * norm(personal)``.

    ``personal`` None (no user vector) means similarity alone.

    Examples
    --------
    >>> blend_scores(np.array([1.0, 0.0, 0.5]), np.array([0.0, 2.0, 1.0]), 0.5).tolist()
    [0.5, 0.5, 0.5]
    >>> blend_scores(np.array([1.0, 0.0]), None, 0.5).tolist()
    [1.0, 0.0]
    """
    sim = normalise(similarity, normalisation)
    if personal is None or blend <= 0:
        return sim
    return _mix(sim, normalise(personal, normalisation), blend)


def anchor_weights(n_anchors: int, decay: float) -> np.ndarray:
    """Weight of each anchor, oldest first: ``decay ** steps before the newest``.

    Examples
    --------
    >>> anchor_weights(3, 0.5).tolist(), anchor_weights(2, 0.0).tolist()
    ([0.25, 0.5, 1.0], [0.0, 1.0])
    """
    return np.power(float(decay), np.arange(n_anchors - 1, -1, -1, dtype=np.float64))


def _top_mask(segments: _Segments, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """True for the ``k`` best entries of each segment (all of a shorter one); ties to the
    lower item."""
    seg = segments.seg
    width = int(segments.counts.max(initial=0))
    if width <= k:
        return np.ones(len(seg), dtype=bool)
    if k <= 0:
        return np.zeros(len(seg), dtype=bool)
    if segments.n == 1:
        kth = np.partition(scores, width - k)[width - k]
    else:  # each segment's k-th best from a table of segments, padded with -inf
        table = np.full((segments.n, width), -np.inf)
        table[seg, np.arange(len(seg)) - segments.starts[seg]] = scores
        table.partition(width - k, axis=1)
        kth = table[:, width - k][seg]
    keep = scores > kth
    room = k - np.bincount(seg[keep], minlength=segments.n)
    tied = (scores == kth).nonzero()[0]
    tied = tied[np.lexsort((items[tied], seg[tied]))]
    tied_seg = seg[tied]
    rank = np.arange(len(tied)) - np.searchsorted(tied_seg, tied_seg)
    keep[tied[rank < room[tied_seg]]] = True
    return keep


def _best(segments: _Segments, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries of each segment, segment by segment, best first
    (ties to the lower item)."""
    chosen, seg = None, segments.seg
    if len(scores) > _package._SORT_ALL:
        chosen = _top_mask(segments, items, scores, k).nonzero()[0]
        items, scores, seg = items[chosen], scores[chosen], seg[chosen]
    order = np.lexsort((items, -scores, seg))
    seg = seg[order]
    order = order[np.arange(len(order)) - seg.searchsorted(seg) < k]
    return order if chosen is None else chosen[order]


def _top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (item, score) pairs, best first, ties to the lower index."""
    order = _best(_Segments.single(len(items)), items, scores, n)
    return items[order], scores[order]
