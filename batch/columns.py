"""Events as columns: the compact form the batch job trains on, and their builder.

Ids are interned into integer codes so that tens of millions of events take a
few hundred MB, not tens of millions of Python objects.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from shared.events import EVENT_TYPES, Event


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


    def events(self, rows: Sequence[int], id_prefix: str = "row") -> Iterator[Event]:
        """The events of ``rows``, in that order, as the worker would have parsed them.

        An event's ``category`` is its item's (the last one seen); its id is
        ``<id_prefix>-<row>``, unique within the columns, which keep no event
        ids (events of two columns applied to one row need two prefixes).

        >>> columns = ColumnsBuilder()
        >>> columns.add_events([Event("e1", "u1", "s1", "i7", "buy", 3, 2000, category="c")])
        >>> next(columns.build().events([0]))
        Event(event_id='row-0', user_id='u1', session_id='s1', item_id='i7', type='buy', \
type_code=3, ts_ms=2000, dwell_ms=None, category='c', price=None, quantity=None)
        """
        users, sessions, items = (self.user_ids.astype(str), self.session_ids.astype(str),
                                  self.item_ids.astype(str))
        categories = np.asarray(self.categories).astype(str)
        for row in rows:
            item = int(self.item[row])
            category, type_code, dwell = (int(self.item_category[item]), int(self.type[row]),
                                          int(self.dwell_ms[row]))
            yield Event(f"{id_prefix}-{row}", str(users[self.user[row]]), str(sessions[self.session[row]]),
                        str(items[item]), EVENT_TYPES[type_code], type_code, int(self.ts_ms[row]),
                        dwell if dwell >= 0 else None,
                        str(categories[category]) if 0 <= category < len(categories) else None)


class _Vocabulary:
    """Interns ids to codes 0, 1, ... in order of first appearance."""

    def __init__(self):
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """Codes of ``ids`` (str or UTF-8 bytes), adding the new ones."""
        uniques, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        codes = self._codes
        lookup = np.empty(len(uniques), dtype=np.int64)
        lookup[order] = np.fromiter(
            (codes.setdefault(key, len(codes)) for key in as_texts(uniques[order])),
            dtype=np.int64, count=len(uniques))
        return lookup[inverse.reshape(-1)]

    def ids(self) -> np.ndarray:
        return np.array(list(self._codes), dtype=str)


class ColumnsBuilder:
    """Builds :class:`EventColumns` a chunk at a time, interning ids in order of first appearance.

    Memory holds the codes of the events added so far and the vocabularies,
    not the chunks.

    Examples
    --------
    >>> from shared.events import EVENT_TYPES, Event
    >>> builder = ColumnsBuilder()
    >>> builder.add_events([Event("e1", "u1", "s1", "i7", "view", 0, 1000),
    ...                     Event("e2", "u2", "s2", "i7", "buy", 3, 2000)])
    >>> columns = builder.build()
    >>> columns.user.tolist(), columns.item_ids.tolist()
    ([0, 1], ['i7'])
    """

    def __init__(self):
        self.users, self.sessions, self.items, self.categories = (
            _Vocabulary(), _Vocabulary(), _Vocabulary(), _Vocabulary())
        self.item_category = np.empty(0, dtype=np.int32)
        self.parts: dict[str, list[np.ndarray]] = {
            name: [] for name in ("user", "session", "item", "type", "ts_ms", "dwell_ms")}

    def add_events(self, events: Sequence[Event]) -> None:
        """Append parsed events, in order."""
        self.add_arrays(**event_arrays(events))

    def add_arrays(self, *, user: np.ndarray, session: np.ndarray, item: np.ndarray,
                type: np.ndarray, ts_ms: np.ndarray, dwell_ms: np.ndarray | None,
                category: np.ndarray | None) -> None:
        """Append rows given as arrays of ids (str or UTF-8 bytes), codes and times, in order;
        ``None`` for ``dwell_ms`` or ``category``: unknown for every row."""
        item = self.items.encode(item)
        dwell_ms = (np.full(len(item), -1, np.int32) if dwell_ms is None
                    else dwell_ms.astype(np.int32))
        for name, values in (("user", self.users.encode(user)),
                             ("session", self.sessions.encode(session)),
                             ("item", item), ("type", type.astype(np.int8)),
                             ("ts_ms", ts_ms.astype(np.int64)), ("dwell_ms", dwell_ms)):
            self.parts[name].append(values)
        self._note_categories(item, category)

    def _note_categories(self, item: np.ndarray, category: np.ndarray | None) -> None:
        """An item's category is the last one seen for it."""
        grown = np.full(len(self.items) - len(self.item_category), -1, dtype=np.int32)
        self.item_category = np.concatenate([self.item_category, grown])
        if category is None:
            return
        known = np.strings.str_len(category) > 0
        if not known.any():
            return
        codes = self.categories.encode(category[known])[::-1]
        last_items, first_in_reversed = np.unique(item[known][::-1], return_index=True)
        self.item_category[last_items] = codes[first_in_reversed]

    def build(self) -> EventColumns:
        """The columns of every event added so far."""
        dtypes = {"user": np.int64, "session": np.int64, "item": np.int64, "type": np.int8,
                  "ts_ms": np.int64, "dwell_ms": np.int32}
        arrays = {name: np.concatenate(parts) if parts else np.empty(0, dtypes[name])
                  for name, parts in self.parts.items()}
        return EventColumns(**arrays, user_ids=self.users.ids(),
                            session_ids=self.sessions.ids(), item_ids=self.items.ids(),
                            item_category=self.item_category, categories=self.categories.ids())


def event_arrays(events: Sequence[Event]) -> dict[str, np.ndarray]:
    """The columns of parsed events, as :meth:`ColumnsBuilder.add_arrays` takes them."""
    return {
        "user": np.array([e.user_id for e in events], dtype=str),
        "session": np.array([e.session_id for e in events], dtype=str),
        "item": np.array([e.item_id for e in events], dtype=str),
        "type": np.array([e.type_code for e in events], dtype=np.int8),
        "ts_ms": np.array([e.ts_ms for e in events], dtype=np.int64),
        "dwell_ms": np.array([-1 if e.dwell_ms is None else e.dwell_ms for e in events],
                             dtype=np.int32),
        "category": np.array([e.category or "" for e in events], dtype=str)}


def as_texts(values: np.ndarray) -> list[str]:
    """The values as Python strings (UTF-8 bytes decoded)."""
    if values.dtype.kind == "S":
        values = np.strings.decode(values, "utf-8")
    return values.tolist()
