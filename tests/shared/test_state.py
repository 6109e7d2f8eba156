"""The event-to-state rule: the users row it stores, and how it tells new events from copies
and from records read again."""
import dataclasses

import orjson

from shared.events import parse_event
from shared.state import StateRule, UserState, apply_event, decode_user, encode_user

T0 = 1_750_000_000_000
RULE = StateRule(dedup_window_s=3600, dedup_max_ids=64)


def _event(n: int, item: str = "i1", ts: int | None = None):
    return parse_event(orjson.dumps({"event_id": f"e{n}", "user_id": "u", "session_id": "s",
                                     "item_id": item, "type": "click",
                                     "ts": T0 + n if ts is None else ts}),
                       now_ms=T0 + 10**12)


def _apply_all(events_at, rule=RULE):
    user = None
    for event, offset in events_at:
        state = apply_event(event, user, rule, partition=3, offset=offset)
        if state is not None:
            user = state
    return user


def test_row_round_trip_keeps_ids_times_newest_offset_and_partition():
    user = _apply_all([(_event(1), 10), (_event(2, "i2"), 12)])
    assert (user.recent, user.recent_ts, user.offset, user.partition) == (
        ("e1", "e2"), (T0 + 1, T0 + 2), 12, 3)
    assert decode_user(encode_user(user)) == user


def test_a_row_without_offsets_or_times_falls_back_to_ids():
    old = orjson.dumps({"history": None, "recent": ["e1", "e2"]})
    user = decode_user(old)
    assert user.offset == -1 and user.partition == -1 and len(user.recent_ts) == 2
    assert user.seen("e2", 3, 5) == "copy" and user.seen("e3", 3, 5) is None


def test_each_event_counts_once_however_it_comes_back():
    first = _apply_all([(_event(1), 10)])
    again = _apply_all([(_event(1), 10), (_event(1), 10), (_event(1), 11)])
    assert again.history.confidence == first.history.confidence
    assert again.recent == ("e1",)


def test_a_copy_is_dropped_however_many_events_came_in_between_within_the_window():
    events = [(_event(n, f"i{n}", ts=T0 + n * 1000), 100 + n) for n in range(1000)]
    rule = StateRule(dedup_window_s=3600, dedup_max_ids=2000)
    user = _apply_all(events, rule)
    assert user.recent[0] == "e0"  # 999 s before the newest: still in the window
    assert apply_event(_event(0, "i0", ts=T0), user, rule, partition=3, offset=5000) is None


def test_ids_older_than_the_window_are_forgotten_and_the_row_stays_bounded():
    events = [(_event(n, f"i{n}", ts=T0 + n * 60_000), 100 + n) for n in range(200)]
    user = _apply_all(events)  # one event a minute; the window is an hour
    assert len(user.recent) == 61 and user.recent[0] == "e139"
    capped = _apply_all(events, StateRule(dedup_window_s=10**6, dedup_max_ids=50))
    assert len(capped.recent) == 50 and capped.recent[0] == "e150"
    # A copy of an event older than the window is applied again (documented bound).
    assert apply_event(_event(0, "i0", ts=T0), user, RULE, partition=3,
                       offset=9000) is not None


def test_a_record_read_again_after_its_id_left_the_window_is_not_applied_twice():
    events = [(_event(n, f"i{n}", ts=T0 + n * 60_000), 100 + n) for n in range(200)]
    user = _apply_all(events)
    assert "e0" not in user.recent
    assert user.seen("e0", 3, 100) == "read_again"
    assert apply_event(_event(0, "i0", ts=T0), user, RULE, partition=3, offset=100) is None
    assert apply_event(_event(999, "i0"), user, RULE, partition=3, offset=400) is not None


def test_an_event_weighted_zero_extends_the_session_but_not_the_history():
    rule = StateRule(weights=dataclasses.replace(RULE.weights, click=0.0))
    user = apply_event(_event(1), None, rule, partition=0, offset=1)
    assert user.history.items == () and user.session("s").items == ("i1",)
    assert user.recent == ("e1",)


def _in_session(n: int, session: str):
    return parse_event(orjson.dumps({"event_id": f"e{n}", "user_id": "u", "session_id": session,
                                     "item_id": f"i{n}", "type": "view", "ts": T0 + n}),
                       now_ms=T0 + 10**12)


def test_the_row_keeps_the_newest_sessions_and_an_older_one_starts_again():
    rule = StateRule(user_sessions=2)
    user = None
    for n, session in enumerate(["a", "a", "b", "a", "c", "b"]):
        user = apply_event(_in_session(n, session), user, rule, partition=0, offset=n)
    assert [sid for sid, _ in user.sessions] == ["c", "b"]
    assert user.session("b").items == ("i5",)  # b left the row when c came, then started again
    assert user.session("a").items == ()
    assert decode_user(encode_user(user)) == user


def test_empty_user_state_is_the_default_row():
    assert decode_user(encode_user(UserState())) == UserState()


def test_a_row_at_every_default_bound_fits_a_changelog_message():
    """Ids at RECSYS_MAX_ID_CHARS of 4-byte characters in every place a row holds ids."""
    from shared.config import Settings
    from shared.scoring import History, Session

    settings, rule = Settings(), StateRule()
    char = "\U0001F600"

    def ids(prefix: str, n: int) -> tuple:
        return tuple((f"{prefix}{k}" + char * settings.max_id_chars)[:settings.max_id_chars]
                     for k in range(n))

    history = History(items=ids("i", rule.history_max), confidence=(2.5,) * rule.history_max,
                      last_ts_ms=(T0,) * rule.history_max, updated_ts_ms=T0,
                      bought=ids("b", rule.history_max))
    sessions = tuple((sid, Session(items=ids(f"{k}x", rule.session_max),
                                   shown=ids(f"{k}y", rule.session_max)))
                     for k, sid in enumerate(ids("s", rule.user_sessions)))
    user = UserState(history, sessions, ids("e", rule.dedup_max_ids),
                     (T0,) * rule.dedup_max_ids, 10**12, 63)
    assert len(encode_user(user)) < 1_000_000  # librdkafka's and the broker's default limit
