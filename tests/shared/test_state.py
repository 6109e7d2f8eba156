"""The users row: what it stores, and how it tells new events from copies and records read again."""
import orjson

from shared.events import parse_event
from stream.agents import RECENT_EVENT_IDS, UserState, apply_event, decode_user, encode_user


def _event(n: int, item: str = "i1"):
    return parse_event(orjson.dumps({"event_id": f"e{n}", "user_id": "u", "session_id": "s",
                                     "item_id": item, "type": "click", "ts": 1_750_000_000_000 + n}))


def _apply_all(events_at):
    user = session = None
    for event, offset in events_at:
        state = apply_event(event, user, session, partition=3, offset=offset)
        if state is not None:
            user, session = state
    return user


def test_row_round_trip_keeps_ids_newest_offset_and_partition():
    user = _apply_all([(_event(1), 10), (_event(2, "i2"), 12)])
    assert (user.recent, user.offset, user.partition) == (("e1", "e2"), 12, 3)
    assert decode_user(encode_user(user)) == user


def test_a_row_without_an_offset_falls_back_to_ids():
    old = orjson.dumps({"history": None, "recent": ["e1", "e2"]})
    user = decode_user(old)
    assert user.offset == -1 and user.partition == -1
    assert user.seen("e2", 3, 5) == "copy" and user.seen("e3", 3, 5) is None


def test_each_event_counts_once_however_it_comes_back():
    first = _apply_all([(_event(1), 10)])
    confidence = first.history.confidence
    again = _apply_all([(_event(1), 10), (_event(1), 10), (_event(1), 11)])
    assert again.history.confidence == confidence
    assert again.recent == ("e1",)


def test_a_record_read_again_after_its_id_left_the_window_is_not_applied_twice():
    events = [(_event(n, f"i{n}"), 100 + n) for n in range(RECENT_EVENT_IDS + 5)]
    user = _apply_all(events)
    assert "e0" not in user.recent
    assert user.seen("e0", 3, 100) == "read_again"
    assert apply_event(_event(0, "i0"), user, None, partition=3, offset=100) is None
    assert apply_event(_event(999, "i0"), user, None, partition=3, offset=200) is not None
