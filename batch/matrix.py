"""Events → the ``user_items`` confidence matrix ALS trains on, with its id maps.

What ``implicit`` expects
-------------------------
``implicit`` (0.7) reads every stored value of ``user_items`` as the full
confidence c_ui of a positive pair (p_ui = 1); a pair that is not stored has
p_ui = 0 and c_ui = 1. Its solver builds A = YᵀY + λI + Σ (c_ui - 1) y_i y_iᵀ
and b = Σ c_ui y_i, which is Hu, Koren and Volinsky's user step. So the matrix
holds c_ui = 1 + alpha * r_ui itself (not alpha * r_ui), and the model is
built with ``implicit``'s own ``alpha`` left at 1.0 so it does not scale it
again. r_ui is the sum of the user's events on the item
(:meth:`shared.signals.SignalWeights.preference`); events with r = 0 (a weight
set to 0) are not positives and are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from batch.columns import EventColumns
from shared.events import EVENT_TYPES
from shared.signals import SignalWeights


@dataclass(frozen=True)
class Interactions:
    """The confidence matrix and what its rows and columns are.

    Attributes
    ----------
    user_items : scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        c_ui = 1 + alpha * r_ui on observed pairs.
    users : ndarray of int64, shape (n_users,)
        Row -> user code (into ``EventColumns.user_ids``).
    items : ndarray of int64, shape (n_items,)
        Column -> item code (into ``EventColumns.item_ids``).
    item_index : ndarray of int32, shape (len(item_ids),)
        Item code -> column; -1 for items without a usable event.
    used : ndarray of bool, shape (n_events,)
        Events that went into the matrix.
    """

    user_items: sparse.csr_matrix
    users: np.ndarray
    items: np.ndarray
    item_index: np.ndarray
    used: np.ndarray

    @property
    def n_events(self) -> int:
        return int(np.count_nonzero(self.used))


def usable_events(columns: EventColumns, preference: np.ndarray) -> np.ndarray:
    """Events with known user, session, item and type codes and r > 0.

    Parameters
    ----------
    columns : EventColumns
    preference : ndarray of float32, shape (n_events,)
        r of each event; only read where the type code is valid.

    Returns
    -------
    ndarray of bool, shape (n_events,)
    """
    return (_in_range(columns.user, len(columns.user_ids))
            & _in_range(columns.session, len(columns.session_ids))
            & _in_range(columns.item, len(columns.item_ids))
            & (preference > 0))


def event_preference(columns: EventColumns, weights: SignalWeights) -> np.ndarray:
    """r of each event; 0 for an event whose type code is unknown."""
    known_type = _in_range(columns.type, len(EVENT_TYPES))
    codes = np.where(known_type, columns.type, 0)
    return np.where(known_type, weights.preference(codes, columns.dwell_ms), 0).astype(np.float32)


def build_interactions(columns: EventColumns, weights: SignalWeights) -> Interactions:
    """Sum r per (user, item) and turn it into ``implicit``'s confidence matrix.

    Users and items without a usable event get no row or column.

    Parameters
    ----------
    columns : EventColumns
    weights : SignalWeights
        Event weights and alpha.

    Returns
    -------
    Interactions

    Examples
    --------
    Two clicks and a buy by user 0 on item 1, a click by user 1 on item 0,
    alpha = 15: c = 1 + 15 * (0.25 + 0.25 + 1.0) and 1 + 15 * 0.25.

    >>> import numpy as np
    >>> from batch.columns import EventColumns
    >>> w = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25,
    ...                   add_to_cart=0.5, buy=1.0, alpha=15.0)
    >>> cols = EventColumns(
    ...     user=np.array([0, 0, 0, 1]), session=np.array([0, 0, 0, 1]),
    ...     item=np.array([1, 1, 1, 0]), type=np.array([1, 1, 3, 1], dtype=np.int8),
    ...     ts_ms=np.arange(4), dwell_ms=np.full(4, -1, dtype=np.int32),
    ...     user_ids=np.array(["u0", "u1"]), session_ids=np.array(["s0", "s1"]),
    ...     item_ids=np.array(["i0", "i1"]), item_category=np.array([-1, -1], dtype=np.int32),
    ...     categories=np.array([], dtype=str))
    >>> build_interactions(cols, w).user_items.toarray().tolist()
    [[0.0, 23.5], [4.75, 0.0]]
    """
    r = event_preference(columns, weights)
    used = usable_events(columns, r)
    user, item = columns.user, columns.item
    if not used.all():  # else spare copies of tens of millions of codes
        user, item, r = user[used], item[used], r[used]
    user_index, users = _compact(user, len(columns.user_ids))
    item_index, items = _compact(item, len(columns.item_ids))
    summed = sparse.coo_matrix((r, (user_index[user], item_index[item])),
                               shape=(len(users), len(items))).tocsr()  # sums duplicates
    summed.data = (1.0 + weights.alpha * summed.data).astype(np.float32)
    return Interactions(user_items=summed, users=users, items=items,
                        item_index=item_index, used=used)


def _in_range(codes: np.ndarray, size: int) -> np.ndarray:
    return (codes >= 0) & (codes < size)


def _compact(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(code -> dense index or -1, dense index -> code) for the codes that occur."""
    present = np.bincount(codes, minlength=size) > 0
    index = np.full(size, -1, dtype=np.int32)
    index[present] = np.arange(np.count_nonzero(present), dtype=np.int32)
    return index, np.flatnonzero(present).astype(np.int64)
