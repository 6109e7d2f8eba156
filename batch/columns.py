"""Events as columns: the compact form the batch job trains on.

Ids are interned into integer codes so that tens of millions of events take a
few hundred MB, not tens of millions of Python objects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EventColumns:
    """Events as parallel arrays, one row per event, ids as codes into vocabularies.

    Attributes
    ----------
    user, session, item : ndarray of int64
        Codes into ``user_ids``, ``session_ids``, ``item_ids``.
    type : ndarray of int8
        Code into :data:`shared.events.EVENT_TYPES`.
    ts_ms : ndarray of int64
        Event time, epoch milliseconds.
    dwell_ms : ndarray of int32
        Time spent viewing; -1 when unknown.
    user_ids, session_ids, item_ids : ndarray of str
        The external ids, indexed by code.
    item_category : ndarray of int32
        For each item code, a code into ``categories``; -1 when unknown.
    categories : ndarray of str
    """

    user: np.ndarray
    session: np.ndarray
    item: np.ndarray
    type: np.ndarray
    ts_ms: np.ndarray
    dwell_ms: np.ndarray
    user_ids: np.ndarray
    session_ids: np.ndarray
    item_ids: np.ndarray
    item_category: np.ndarray
    categories: np.ndarray

    def __len__(self) -> int:
        return len(self.item)
