"""The event-to-state rule: one valid event and the row it changes, as pure functions.

A shopper's state is one ``users`` row (:class:`UserState`): the history the
fold-in reads, the shopper's latest sessions (:class:`shared.scoring.Session`,
the newest ``user_sessions``), the ids of recent events, and where the newest
applied event was read. One row per user makes each event's change a single
write: after a crash the history and the session cannot disagree about
which events they hold. :func:`apply_event` is the only rule that turns an
event into a new row; the stream worker applies it to its RocksDB table and
the fault suite's verifier folds it over a whole event log to know what the
table must hold.

Applying is exactly once, by two tests in :meth:`UserState.seen`:

* **read again**: a record at or before the user's newest applied offset in
  the user's partition was applied when first read (a crash or a rebalance
  came before its offset was committed). It changes nothing, however far
  back a replay starts.
* **copy**: a record with the id of an event applied earlier (the producer
  sent it twice). Ids are remembered per user within a window of event
  time: every applied event whose ``ts`` is within ``dedup_window_s`` of the
  user's newest applied event, and at most ``dedup_max_ids`` of them (the
  newest). A copy is dropped when its original is still in that window; a
  copy of an event older than the window is applied again. The bound is
  the time between the copy's original and the user's newest event, not the
  number of events in between, and the row holds at most ``dedup_max_ids``
  ids of at most ``RECSYS_MAX_ID_CHARS`` characters each.

Example
-------
>>> from shared.events import Event
>>> rule = StateRule()
>>> event = Event("e1", "u1", "s1", "i1", "click", 1, 1_000_000)
>>> user = apply_event(event, None, rule, partition=0, offset=7)
>>> user.recent, user.offset, user.session("s1").items
(('e1',), 7, ('i1',))
>>> apply_event(event, user, rule, partition=0, offset=9) is None  # a copy
True
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from shared.config import Settings
from shared.events import Event
from shared.scoring import History, Session, add_to_history, add_to_session
from shared.signals import SignalWeights

BUY = "buy"
_DEFAULTS = Settings()


@dataclass(frozen=True, slots=True)
class StateRule:
    """What the rule needs besides the event and the rows.

    Attributes
    ----------
    weights : SignalWeights
        r and alpha per event; the worker uses those of the model it serves.
    history_max, decay_half_life_s, session_max
        Bounds and decay of the history and the session (:func:`add_to_history`).
    user_sessions : int
        Sessions kept in a row, the newest; an event of a session that left the
        row starts it again.
    dedup_window_s : float
        Event time over which applied ids are remembered (module docstring).
    dedup_max_ids : int
        Most ids remembered per user.
    """

    weights: SignalWeights = SignalWeights.from_settings(_DEFAULTS)
    history_max: int = _DEFAULTS.history_max
    decay_half_life_s: float = _DEFAULTS.decay_half_life_s
    session_max: int = _DEFAULTS.session_max
    user_sessions: int = _DEFAULTS.user_sessions
    dedup_window_s: float = _DEFAULTS.dedup_window_s
    dedup_max_ids: int = _DEFAULTS.dedup_max_ids

    @classmethod
    def from_settings(cls, settings) -> StateRule:
        """The rule as configured (:class:`shared.config.Settings`)."""
        return cls(SignalWeights.from_settings(settings), settings.history_max,
                   settings.decay_half_life_s, settings.session_max, settings.user_sessions,
                   settings.dedup_window_s, settings.dedup_max_ids)

    def with_weights(self, weights: SignalWeights | None) -> StateRule:
        """The same rule with a model's signal weights (unchanged when it recorded none)."""
        return self if weights is None else replace(self, weights=weights)


@dataclass(frozen=True, slots=True)
class UserState:
    """A ``users`` row.

    Attributes
    ----------
    history : History
    sessions : tuple of (str, Session)
        The latest sessions by id, oldest first.
    recent : tuple of str
        Ids of the applied events in the dedup window, oldest first.
    recent_ts : tuple of int
        Their event times, epoch ms, in the same order.
    offset, partition : int
        Where the newest applied event was read on ``events`` (-1: unknown).
    """

    history: History = History()
    sessions: tuple = ()
    recent: tuple = ()
    recent_ts: tuple = ()
    offset: int = -1
    partition: int = -1

    def seen(self, event_id: str, partition: int, offset: int) -> str | None:
        """What reading ``event_id`` at ``offset`` in ``partition`` is for this row.

        None: an event not applied yet; ``"read_again"``: a record at or before
        the newest one applied; ``"copy"``: another record with the id of an
        event in the dedup window (module docstring).

        >>> user = UserState(recent=("a", "b"), recent_ts=(1, 2), offset=9, partition=2)
        >>> [user.seen("c", 2, 10), user.seen("b", 2, 9), user.seen("b", 2, 12), user.seen("z", 2, 3)]
        [None, 'read_again', 'copy', 'read_again']
        """
        if partition == self.partition and 0 <= offset <= self.offset:
            return "read_again"
        return "copy" if event_id in self.recent else None

    def session(self, session_id: str) -> Session:
        """The session ``session_id`` as this row holds it (empty when it holds none)."""
        for known, session in reversed(self.sessions):
            if known == session_id:
                return session
        return Session()

    def remember(self, event_id: str, ts_ms: int, rule: StateRule) -> tuple[tuple, tuple]:
        """``recent`` and ``recent_ts`` with ``event_id`` added and the window applied.

        >>> rule = StateRule(dedup_window_s=10, dedup_max_ids=3)
        >>> UserState(recent=("a", "b"), recent_ts=(0, 5_000)).remember("c", 12_000, rule)
        (('b', 'c'), (5000, 12000))
        >>> UserState(recent=("a", "b", "c"), recent_ts=(1, 2, 3)).remember("d", 4, rule)
        (('b', 'c', 'd'), (2, 3, 4))
        """
        ids, times = self.recent + (event_id,), self.recent_ts + (ts_ms,)
        start = max(0, len(ids) - rule.dedup_max_ids)
        oldest = max(times) - rule.dedup_window_s * 1000.0
        while start < len(ids) - 1 and times[start] < oldest:
            start += 1
        return ids[start:], times[start:]


def apply_event(event: Event, user: UserState | None, rule: StateRule, *, partition: int = -1,
                offset: int = -1) -> UserState | None:
    """The row after one valid event read at ``offset`` in ``partition``; pure.

    Returns None when the event changes nothing (:meth:`UserState.seen`).
    An event weighted 0 adds no interaction to the history (as in the
    training matrix), but it is remembered and it extends the session.
    """
    user = user or UserState()
    if user.seen(event.event_id, partition, offset) is not None:
        return None
    weights = rule.weights
    preference = weights.preference_one(event.type_code, event.dwell_ms)
    history = user.history
    if preference > 0:
        history = add_to_history(
            history, event.item_id, weights.confidence(preference), event.ts_ms,
            history_max=rule.history_max, decay_half_life_s=rule.decay_half_life_s,
            bought=event.type == BUY)
    session = add_to_session(user.session(event.session_id), event.item_id,
                             max_len=rule.session_max)
    recent, recent_ts = user.remember(event.event_id, event.ts_ms, rule)
    return UserState(history, with_session(user.sessions, event.session_id, session, rule),
                     recent, recent_ts, offset, partition)


def with_session(sessions: tuple, session_id: str, session: Session, rule: StateRule) -> tuple:
    """``sessions`` with ``session_id`` set to ``session`` as the newest, the oldest beyond
    ``rule.user_sessions`` dropped."""
    kept = tuple(pair for pair in sessions if pair[0] != session_id)
    return (kept + ((session_id, session),))[-rule.user_sessions:]


def encode_user(user: UserState) -> bytes:
    """The ``users`` row as stored: ``{"history": History.to_dict(), "sessions": {id:
    Session.to_dict()} (oldest first), "recent": [ids], "recent_ts": [epoch ms],
    "offset": int, "partition": int}``."""
    return orjson.dumps({"history": user.history.to_dict(),
                         "sessions": {sid: session.to_dict() for sid, session in user.sessions},
                         "recent": list(user.recent), "recent_ts": list(user.recent_ts),
                         "offset": user.offset, "partition": user.partition})


def decode_user(value: bytes) -> UserState:
    """The inverse of :func:`encode_user`.

    A row written before offsets or event times were kept reads with -1
    offsets, and its ids with the time of the history's newest update.
    """
    row = orjson.loads(value)
    history = History.from_dict(row.get("history"))
    sessions = tuple((sid, Session.from_dict(session))
                     for sid, session in (row.get("sessions") or {}).items())
    recent = tuple(row.get("recent", ()))
    recent_ts = tuple(row.get("recent_ts", ())) or (history.updated_ts_ms,) * len(recent)
    return UserState(history, sessions, recent, recent_ts, row.get("offset", -1),
                     row.get("partition", -1))
