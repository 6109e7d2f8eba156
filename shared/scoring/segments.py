"""Normalising, blending, anchor weights and the best ``n`` of one list.

The public :func:`normalise`, :func:`blend_scores` and :func:`_top` are the
one-list cases of the per-segment loops of :mod:`shared.scoring.kernels`
that rank a batch, so one list and a batch follow the same maths.
"""
from __future__ import annotations

import numpy as np

from shared.scoring import kernels
from shared.scoring.params import NORMALISATIONS

_ONE = np.zeros(1, dtype=np.int64)  # the start of the one segment of a single list


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
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    return kernels.normalise(scores, _ONE, np.array([len(scores)]), kernels.NORMALISATION[method])


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
    return kernels.mix(sim, normalise(personal, normalisation), blend)


def anchor_weights(n_anchors: int, decay: float) -> np.ndarray:
    """Weight of each anchor, oldest first: ``decay ** steps before the newest``.

    Examples
    --------
    >>> anchor_weights(3, 0.5).tolist(), anchor_weights(2, 0.0).tolist()
    ([0.25, 0.5, 1.0], [0.0, 1.0])
    """
    return np.power(float(decay), np.arange(n_anchors - 1, -1, -1, dtype=np.float64))


def _top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (item, score) pairs, best first, ties to the lower index."""
    order = kernels.best(_ONE, np.array([len(items)]), np.ascontiguousarray(items, dtype=np.int64),
                         np.ascontiguousarray(scores, dtype=np.float64), n)
    return items[order], scores[order]
