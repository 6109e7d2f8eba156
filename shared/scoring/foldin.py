"""The fold-in: a user's vector solved against fixed ALS item factors.

:func:`fold_in_user` is the ALS user step for one history, as ``implicit``
computes it; :func:`_fold_in_batch` gives the same vectors for a batch,
short histories through the Woodbury identity in stacks of padded systems,
each solved on its own. One concept, two ways to solve the same equations.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import sposv as _sposv

from shared.scoring.prepared import _Prepared


def fold_in_user(item_factors: np.ndarray, items, confidence, *, regularization: float,
                 gram: np.ndarray | None = None) -> np.ndarray:
    """Solve one user's vector against fixed ALS item factors (the ALS user step).

    x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u, with YᵀC_uY = YᵀY + Σ (c - 1) y yᵀ over
    the user's items, as ``implicit`` 0.7 computes it: each value is the full
    confidence c (not alpha * r), p = 1 where c > 0; a negative value is a
    disliked item (p = 0) with confidence |c|. The system is formed and
    solved in float32, the precision of the factors, as ``implicit`` does:
    two thirds of the time of float64, and x_u differs from the float64
    solution by a few 1e-6 relative (a test checks it within 1e-5 of a float64
    solve).

    Parameters
    ----------
    item_factors : ndarray, shape (n_items, n_factors)
        Y.
    items : array of int
        Rows of ``item_factors`` the user interacted with, each once.
    confidence : array of float
        c_ui for each of ``items``.
    regularization : float
        λ, the value the model was trained with.
    gram : ndarray, shape (n_factors, n_factors), optional
        YᵀY, precomputed (:attr:`shared.model.Model.gram`; float32 saves a
        conversion per call); computed when absent.

    Returns
    -------
    ndarray of float64, shape (n_factors,)
        Zeros when ``items`` is empty.

    Examples
    --------
    >>> y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> fold_in_user(y, [0], [4.0], regularization=0.1).round(4).tolist()
    [0.8651, -0.4119]
    >>> fold_in_user(y, [], [], regularization=0.1).tolist()
    [0.0, 0.0]
    """
    items = np.asarray(items, dtype=np.int64)
    n_factors = item_factors.shape[1]
    if len(items) == 0:
        return np.zeros(n_factors)
    if gram is None:
        y = item_factors.astype(np.float64)
        gram = y.T @ y
    gram = np.asarray(gram, dtype=np.float32)
    c = np.asarray(confidence, dtype=np.float32)
    y_u = np.asarray(item_factors[items], dtype=np.float32)
    a = gram + (y_u * (np.abs(c) - np.float32(1.0))[:, None]).T @ y_u
    a.flat[::n_factors + 1] += np.float32(regularization)
    b = y_u.T @ np.where(c > 0, c, np.float32(0.0))
    _, x, info = _sposv(a, b, overwrite_a=0, overwrite_b=0)
    if info != 0:  # not positive definite (λ = 0, or |c| < 1): general solver
        x = np.linalg.lstsq(a.astype(np.float64), b.astype(np.float64), rcond=None)[0]
    return x.astype(np.float64)


#: The batched fold-in pads a history to a multiple of this many items.
FOLD_IN_STEP = 8


def _fold_in_batch(prep: _Prepared, histories) -> list[np.ndarray | None]:
    """:func:`fold_in_user` of each (items, confidence) of ``histories`` (items the model knows).

    A history of at most :attr:`_Prepared.woodbury_max` items with every
    |c| >= 1 (and finite) is solved through the Woodbury identity, an h × h
    system instead of the k × k normal equations: with YᵀY + λI = LLᵀ and
    W = YL⁻ᵀ, x_u = L⁻ᵀ W_uᵀ (I + D_u W_u W_uᵀ)⁻¹ c⁺, D_u = diag(|c| - 1),
    c⁺ = max(c, 0). A longer finite history forms the k × k normal equations
    of :func:`fold_in_user` for a whole stack at once (:func:`_normal_fold_in`).
    Histories are padded with zero rows to a multiple of
    :data:`FOLD_IN_STEP` and stacked per padded length; each system is solved
    on its own, so a user's vector does not depend on the rest of the batch.
    A history with a confidence that is not finite, and all of them when
    λ <= 0, take :func:`fold_in_user`. None for an empty history.
    """
    vectors: list[np.ndarray | None] = [None] * len(histories)
    stacks: dict[tuple[bool, int], list[int]] = {}
    for i, (items, confidence) in enumerate(histories):
        if not len(items):
            continue
        if prep.woodbury is not None and math.isfinite(sum(confidence)):
            short = len(items) <= prep.woodbury_max and min(map(abs, confidence)) >= 1.0
            width = -(-len(items) // FOLD_IN_STEP) * FOLD_IN_STEP
            stacks.setdefault((short, width), []).append(i)
        else:
            vectors[i] = fold_in_user(prep.item_factors, items, confidence,
                                      regularization=prep.regularization, gram=prep.gram32)
    for (short, width), members in stacks.items():
        solve = _woodbury_fold_in if short else _normal_fold_in
        for i, x in zip(members, solve(prep, [histories[i] for i in members], width)):
            vectors[i] = x
    return vectors


def _padded(prep: _Prepared, histories, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and confidence of each history, padded to ``width`` with the zero row
    ``n_items`` and confidence 0: shapes (len(histories), width)."""
    pad = prep.n_items
    items = np.array([[*i, *[pad] * (width - len(i))] for i, _ in histories], dtype=np.int64)
    conf = np.array([[*c, *[0.0] * (width - len(c))] for _, c in histories], dtype=np.float64)
    return items, conf


def _normal_fold_in(prep: _Prepared, histories, width: int) -> list[np.ndarray]:
    """x_u of each history (at most ``width`` items each) from the normal equations of
    :func:`fold_in_user`, formed and solved for the stack at once in float32 (one LU
    factorisation per system: the systems are independent, whatever else is in the stack).

    A padding row of Y is zero, so it adds nothing to YᵀC_uY or YᵀC_u p_u.
    """
    items, conf = _padded(prep, histories, width)
    y = prep.item_factors32[items]
    conf = conf.astype(np.float32)
    a = (y * (np.abs(conf) - np.float32(1.0))[:, :, None]).transpose(0, 2, 1) @ y
    a += prep.gram32
    n_factors = a.shape[1]
    a.reshape(len(histories), -1)[:, ::n_factors + 1] += np.float32(prep.regularization)
    b = (np.where(conf > 0, conf, np.float32(0.0))[:, None, :] @ y)[:, 0]
    try:  # one LU solve per system, the stack in one call
        return list(np.linalg.solve(a, b[:, :, None])[:, :, 0].astype(np.float64))
    except np.linalg.LinAlgError:  # a singular system (|c| < 1 can make one): least squares
        return [np.linalg.lstsq(a_u.astype(np.float64), b_u.astype(np.float64),
                                rcond=None)[0] for a_u, b_u in zip(a, b)]


def _woodbury_fold_in(prep: _Prepared, histories, width: int) -> np.ndarray:
    """x_u of each history (at most ``width`` items each), one stack: shape (len(histories), k)."""
    assert prep.woodbury is not None  # the caller stacks histories only when the tables exist
    w_table, l_inv = prep.woodbury
    items, conf = _padded(prep, histories, width)
    w = w_table[items]
    system = w @ w.transpose(0, 2, 1)
    system *= (np.abs(conf) - 1.0)[:, :, None]
    system.reshape(len(histories), -1)[:, ::width + 1] += 1.0
    # I + DK is similar to an SPD matrix with eigenvalues >= 1: never singular.
    v = np.linalg.solve(system, np.maximum(conf, 0.0)[:, :, None])[:, :, 0]
    return (v[:, None, :] @ w @ l_inv)[:, 0]
