"""The shopper's state: a user's :class:`History` and a :class:`Session`, with their update rules.

:func:`add_to_history`, :func:`add_to_session` and :func:`add_shown` are the
rules the stream worker and the replay of ``batch.evaluate`` both apply, so
both hold the same state before scoring an event. The state keeps external
ids (they outlive model versions); :func:`to_indices` and
:func:`history_arrays` map it onto one model's indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np

from shared.model import Model
from shared.scoring.example import _example_model  # noqa: F401  (the examples' model)


@dataclass(frozen=True)
class History:
    """A user's accumulated confidence per item and what they bought, as the worker stores it.

    Items are external ids (they outlive model versions). ``confidence``
    holds c = 1 + decayed sum of alpha * r, as of ``updated_ts_ms``.

    Attributes
    ----------
    items : tuple of str
    confidence : tuple of float
    last_ts_ms : tuple of int
        When each item was last touched.
    updated_ts_ms : int
        The time ``confidence`` refers to.
    bought : tuple of str
        Items bought, oldest first (at most ``history_max``).
    """

    items: tuple = ()
    confidence: tuple = ()
    last_ts_ms: tuple = ()
    updated_ts_ms: int = 0
    bought: tuple = ()

    def to_dict(self) -> dict:
        """Plain JSON-able values (for a RocksDB table)."""
        return {"items": list(self.items), "confidence": list(self.confidence),
                "last_ts_ms": list(self.last_ts_ms), "updated_ts_ms": self.updated_ts_ms,
                "bought": list(self.bought)}

    @classmethod
    def from_dict(cls, value: dict | None) -> History:
        """The inverse of :meth:`to_dict`; an empty history for None."""
        if not value:
            return cls()
        return cls(items=tuple(value["items"]), confidence=tuple(value["confidence"]),
                   last_ts_ms=tuple(value["last_ts_ms"]), updated_ts_ms=int(value["updated_ts_ms"]),
                   bought=tuple(value.get("bought", ())))


def add_to_history(history: History, item, confidence: float, ts_ms: int, *,
                   history_max: int, decay_half_life_s: float = 0.0,
                   bought: bool = False) -> History:
    """Add one event to a user's history (the update rule of worker and replay).

    The confidence above 1 of every item first decays by
    ``0.5 ** (elapsed / half-life)`` (no decay when ``decay_half_life_s`` is 0
    or time goes backwards); the event then adds its own ``confidence - 1``
    (= alpha * r), so an item's c is 1 + the decayed sum of its events'
    alpha * r, as in the batch matrix. When more than ``history_max`` items
    remain, the weakest go (lowest confidence, then least recently touched).

    Parameters
    ----------
    history : History
    item : str
        External item id.
    confidence : float
        c = 1 + alpha * r of the event (:meth:`shared.signals.SignalWeights.confidence`).
    ts_ms : int
        Event time, epoch milliseconds.
    history_max : int
    decay_half_life_s : float
    bought : bool
        The event is a purchase: the item joins ``History.bought``.

    Returns
    -------
    History
        A new value; ``history`` is not changed.

    Examples
    --------
    >>> h = add_to_history(History(), "a", 4.75, 0, history_max=2)
    >>> h = add_to_history(h, "a", 4.75, 1000, history_max=2)
    >>> h.items, h.confidence
    (('a',), (8.5,))
    >>> h = add_to_history(h, "b", 2.0, 2000, history_max=2, decay_half_life_s=1.0)
    >>> h.items, h.confidence
    (('a', 'b'), (4.75, 2.0))
    >>> h = add_to_history(h, "c", 4.75, 3000, history_max=2, bought=True)
    >>> h.items, h.bought
    (('a', 'c'), ('c',))
    """
    elapsed_s = (ts_ms - history.updated_ts_ms) / 1000.0
    factor = 0.5 ** (elapsed_s / decay_half_life_s) if decay_half_life_s > 0 and elapsed_s > 0 else 1.0
    items = list(history.items)
    conf = (list(history.confidence) if factor == 1.0
            else [1.0 + (c - 1.0) * factor for c in history.confidence])
    last = list(history.last_ts_ms)
    gain = float(confidence) - 1.0
    try:
        at = items.index(item)
        conf[at] += gain
        last[at] = max(last[at], ts_ms)
    except ValueError:
        items.append(item)
        conf.append(1.0 + gain)
        last.append(ts_ms)
    if len(items) == history_max + 1:  # the usual case: drop the one weakest, the latest on ties
        low = min(conf)
        ties = [i for i, c in enumerate(conf) if c == low]
        if len(ties) > 1:
            oldest = min(last[i] for i in ties)
            ties = [i for i in ties if last[i] == oldest]
        weakest = ties[-1]
        del items[weakest], conf[weakest], last[weakest]
    elif len(items) > history_max:  # history_max was lowered since the history was written
        keep = sorted(range(len(items)), key=lambda i: (conf[i], last[i]), reverse=True)[:history_max]
        keep.sort()
        items, conf, last = ([seq[i] for i in keep] for seq in (items, conf, last))
    bought_items = history.bought
    if bought and item not in bought_items:
        bought_items = (bought_items + (item,))[-history_max:]
    return History(items=tuple(items), confidence=tuple(conf), last_ts_ms=tuple(last),
                   updated_ts_ms=max(ts_ms, history.updated_ts_ms), bought=bought_items)


@dataclass(frozen=True)
class Session:
    """A shopper session's items in time order (repeats kept) and the items shown in it.

    Attributes
    ----------
    items : tuple of str
        External ids, newest last.
    shown : tuple of str
        Items recommended in this session, newest last.
    """

    items: tuple = ()
    shown: tuple = ()

    def to_dict(self) -> dict:
        """Plain JSON-able values (for a RocksDB table)."""
        return {"items": list(self.items), "shown": list(self.shown)}

    @classmethod
    def from_dict(cls, value: dict | None) -> Session:
        """The inverse of :meth:`to_dict`; an empty session for None."""
        if not value:
            return cls()
        return cls(items=tuple(value["items"]), shown=tuple(value.get("shown", ())))


def add_to_session(session: Session, item, *, max_len: int) -> Session:
    """Append an event's item to the session, keeping the last ``max_len``.

    Repeats stay: coming back to an item is a signal (the ``session`` source).

    Examples
    --------
    >>> add_to_session(Session(("a", "b")), "a", max_len=2).items
    ('b', 'a')
    """
    return Session(items=(session.items + (item,))[-max_len:], shown=session.shown)


def add_shown(session: Session, item_ids, *, max_len: int) -> Session:
    """Remember items shown in the session (for ``filter_shown``), keeping the last ``max_len``.

    Examples
    --------
    >>> add_shown(Session(("a",), ("x",)), ["y", "x", "z"], max_len=3).shown
    ('y', 'x', 'z')
    """
    new = tuple(item_ids)
    fresh = set(new)
    kept = tuple(i for i in session.shown if i not in fresh)
    return Session(items=session.items, shown=(kept + new)[-max_len:])


def _index_list(model: Model, item_ids) -> list:
    """Model indices of external ids as a list; -1 for ids the model does not know."""
    return list(map(model.item_index.get, item_ids, repeat(-1)))


def _known_history(model: Model, history: History) -> tuple[list, list]:
    """(item indices, confidence) of a history's items the model knows, as lists."""
    items, confidence = _index_list(model, history.items), list(history.confidence)
    if -1 in items:
        confidence = [c for item, c in zip(items, confidence) if item >= 0]
        items = [item for item in items if item >= 0]
    return items, confidence


def to_indices(model: Model, item_ids) -> np.ndarray:
    """Model indices of external ids; -1 for ids the model does not know.

    Examples
    --------
    >>> m = _example_model()
    >>> to_indices(m, ["i2", "nope", "i0"]).tolist()
    [2, -1, 0]
    """
    return np.array(_index_list(model, item_ids), dtype=np.int64)


def history_arrays(model: Model, history: History) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, confidence) of a history's items the model knows.

    Examples
    --------
    >>> m = _example_model()
    >>> history_arrays(m, History(items=("i1", "x"), confidence=(3.0, 2.0), last_ts_ms=(0, 0)))
    (array([1]), array([3.]))
    """
    items, confidence = _known_history(model, history)
    return np.array(items, dtype=np.int64), np.array(confidence, dtype=np.float64)
