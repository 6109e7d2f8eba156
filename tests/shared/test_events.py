"""The event contract: parsing, validation codes, the canonical encoding."""
from __future__ import annotations

import json
import pickle
from dataclasses import FrozenInstanceError
from datetime import timezone

import pytest
from hypothesis import given, strategies as st

from shared.config import load_settings
from shared.events import (ERROR_CODES, EVENT_TYPE_CODES, EVENT_TYPES, MAX_TS_MS, Event,
                           EventError, EventLimits, encode_event, parse_event)

GOOD = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i1",
        "type": "view", "ts": 1396867869277}


def event_bytes(**changes) -> bytes:
    """GOOD with ``changes``; a value of ``...`` removes the field."""
    fields = {**GOOD, **changes}
    return encode_event({k: v for k, v in fields.items() if v is not ...})


def code_of(raw: bytes, **limits) -> str:
    with pytest.raises(EventError) as caught:
        parse_event(raw, **limits)
    return caught.value.code


def test_a_full_event_parses_to_typed_fields():
    event = parse_event(event_bytes(type="buy", category="shoes", price=19, quantity=2,
                                    dwell_ms=0, extra={"ignored": True}))
    assert event == Event(event_id="e1", user_id="u1", session_id="s1", item_id="i1",
                          type="buy", type_code=3, ts_ms=1396867869277, dwell_ms=0,
                          category="shoes", price=19.0, quantity=2)
    assert type(event.price) is float


@pytest.mark.parametrize("user_id", [..., None, "", "   "])
def test_an_anonymous_visitor_is_known_by_the_session(user_id):
    assert parse_event(event_bytes(user_id=user_id)).user_id == "s1"


def test_integer_ids_and_categories_become_decimal_strings():
    event = parse_event(event_bytes(event_id=7, user_id=-3, session_id=0, item_id=214536502,
                                    category=12))
    assert (event.event_id, event.user_id, event.session_id, event.item_id, event.category) == (
        "7", "-3", "0", "214536502", "12")


@pytest.mark.parametrize("ts, ts_ms", [
    ("2014-04-07T10:51:09.277Z", 1396867869277),
    ("2014-04-07T12:51:09.277+02:00", 1396867869277),
    ("2014-04-07T10:51:09.2779Z", 1396867869277),
    ("1970-01-01T00:00:00Z", 0),
    (0, 0),
    (MAX_TS_MS, MAX_TS_MS),
])
def test_timestamps_are_epoch_ms_or_zoned_iso(ts, ts_ms):
    assert parse_event(event_bytes(ts=ts)).ts_ms == ts_ms


@pytest.mark.parametrize("name, code", list(EVENT_TYPE_CODES.items()))
def test_each_type_has_its_code(name, code):
    event = parse_event(event_bytes(type=name))
    assert (event.type, event.type_code, EVENT_TYPES[code]) == (name, code, name)


BAD_INPUTS = [
    (b"x" * 1001, "oversized"),
    (event_bytes(category="c" * 1000), "oversized"),
    (b'{"event_id": "\xff"}', "not_utf8"),
    (b'{"event_id": ', "not_json"),
    (b"", "not_json"),
    (None, "not_json"),
    (b'{"ts": NaN}', "not_json"),
    (b"[1, 2]", "not_object"),
    (b'"text"', "not_object"),
    (b"null", "not_object"),
    (event_bytes(event_id=...), "missing_field"),
    (event_bytes(session_id=None), "missing_field"),
    (event_bytes(item_id=...), "missing_field"),
    (event_bytes(type=...), "missing_field"),
    (event_bytes(ts=None), "missing_field"),
    (event_bytes(event_id=""), "empty_field"),
    (event_bytes(item_id="  "), "empty_field"),
    (event_bytes(session_id=""), "empty_field"),
    (event_bytes(item_id=1.5), "bad_field_type"),
    (event_bytes(event_id=True), "bad_field_type"),
    (event_bytes(user_id=["u1"]), "bad_field_type"),
    (event_bytes(category={"a": 1}), "bad_field_type"),
    (event_bytes(type=3), "bad_field_type"),
    (event_bytes(type="purchase"), "unknown_type"),
    (event_bytes(type="VIEW"), "unknown_type"),
    (event_bytes(type=""), "unknown_type"),
    (event_bytes(ts="2014-04-07T10:51:09"), "bad_timestamp"),
    (event_bytes(ts="2014-04-07"), "bad_timestamp"),
    (event_bytes(ts="1396867869277"), "bad_timestamp"),
    (event_bytes(ts="yesterday"), "bad_timestamp"),
    (event_bytes(ts=1396867869.277), "bad_timestamp"),
    (event_bytes(ts=-1), "bad_timestamp"),
    (event_bytes(ts=MAX_TS_MS + 1), "bad_timestamp"),
    (event_bytes(ts="1969-12-31T23:59:59Z"), "bad_timestamp"),
    (event_bytes(ts=True), "bad_timestamp"),
    (event_bytes(dwell_ms=-1), "bad_dwell"),
    (event_bytes(dwell_ms=1001), "bad_dwell"),
    (event_bytes(dwell_ms=1.5), "bad_dwell"),
    (event_bytes(dwell_ms="10"), "bad_dwell"),
    (event_bytes(price=-0.01), "bad_price"),
    (event_bytes(price=100.5), "bad_price"),
    (event_bytes(price="9.99"), "bad_price"),
    (event_bytes(price=False), "bad_price"),
    (event_bytes(quantity=0), "bad_quantity"),
    (event_bytes(quantity=-2), "bad_quantity"),
    (event_bytes(quantity=11), "bad_quantity"),
    (event_bytes(quantity=1.0), "bad_quantity"),
]


@pytest.mark.parametrize("raw, code", BAD_INPUTS)
def test_each_kind_of_bad_input_has_its_code(raw, code):
    assert code_of(raw, max_bytes=1000, max_dwell_ms=1000, max_price=100.0,
                   max_quantity=10) == code


def test_every_error_code_is_exercised_above():
    assert {code for _, code in BAD_INPUTS} == set(ERROR_CODES)


def test_deep_nesting_within_the_size_limit_is_not_json():
    assert code_of(b"[" * 2000 + b"]" * 2000) == "not_json"


def test_first_problem_wins_in_field_order():
    assert code_of(event_bytes(event_id="", item_id=...)) == "empty_field"


def test_limits_come_from_settings():
    limits = EventLimits.from_settings(load_settings({"RECSYS_MAX_QUANTITY": "3"}))
    assert limits.max_quantity == 3
    assert code_of(event_bytes(type="buy", quantity=4), **vars(limits)) == "bad_quantity"
    assert parse_event(event_bytes(type="buy", quantity=4)).quantity == 4


def test_error_carries_code_and_message_and_pickles():
    error = EventError("bad_dwell", "'dwell_ms' must be an integer")
    assert str(error) == "bad_dwell: 'dwell_ms' must be an integer"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message) == (error.code, error.message)
    assert isinstance(error, ValueError)


def test_event_is_frozen():
    event = parse_event(event_bytes())
    with pytest.raises(FrozenInstanceError):
        event.item_id = "other"
    assert hash(event) == hash(parse_event(event_bytes()))


def test_canonical_encoding_is_compact_ordered_and_omits_unknowns():
    event = parse_event(event_bytes(user_id=None, ts="2014-04-07T10:51:09.277Z", dwell_ms=5,
                                    extra=1))
    assert event.to_json_bytes() == (
        b'{"event_id":"e1","user_id":"s1","session_id":"s1","item_id":"i1","type":"view",'
        b'"ts":1396867869277,"dwell_ms":5}')


def test_encode_event_writes_what_it_is_given():
    assert encode_event({"ts": "x", "item_id": "é"}) == '{"ts":"x","item_id":"é"}'.encode()


# --- properties --------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4),
    max_leaves=12)
iso_times = st.datetimes(timezones=st.just(timezone.utc)).map(lambda moment: moment.isoformat())
field_values = {
    "event_id": json_values | st.text(min_size=1),
    "user_id": json_values | st.text(min_size=1),
    "session_id": json_values | st.text(min_size=1),
    "item_id": json_values | st.integers() | st.text(min_size=1),
    "type": json_values | st.sampled_from(EVENT_TYPES),
    "ts": json_values | st.integers() | iso_times | st.datetimes().map(str),
    "dwell_ms": json_values | st.integers(),
    "category": json_values,
    "price": json_values | st.floats(-1e8, 1e8),
    "quantity": json_values | st.integers(-5, 20000),
}
event_dicts = st.fixed_dictionaries({}, optional=field_values)


def parse_or_code(raw: bytes) -> Event | str:
    """The event, or the code of the EventError; any other exception fails the test."""
    try:
        return parse_event(raw)
    except EventError as error:
        assert error.code in ERROR_CODES
        return error.code


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_parser(raw):
    parse_or_code(raw)


@given(json_values)
def test_no_json_value_crashes_the_parser(value):
    parse_or_code(json.dumps(value).encode())


@given(event_dicts)
def test_no_event_like_object_crashes_the_parser_and_valid_ones_round_trip(fields):
    result = parse_or_code(json.dumps(fields).encode())
    if isinstance(result, Event):
        assert parse_event(result.to_json_bytes()) == result
        assert result.user_id and result.session_id and result.item_id and result.event_id
        assert 0 <= result.ts_ms <= MAX_TS_MS


ids = st.text(min_size=1, max_size=12).filter(lambda text: not text.isspace())


@given(event_id=ids, user_id=ids, session_id=ids, item_id=ids,
       type_name=st.sampled_from(EVENT_TYPES), ts_ms=st.integers(0, MAX_TS_MS),
       dwell_ms=st.none() | st.integers(0, 6 * 3600 * 1000))
def test_valid_events_keep_their_values(event_id, user_id, session_id, item_id, type_name,
                                        ts_ms, dwell_ms):
    raw = encode_event({"event_id": event_id, "user_id": user_id, "session_id": session_id,
                        "item_id": item_id, "type": type_name, "ts": ts_ms,
                        "dwell_ms": dwell_ms})
    assert parse_event(raw) == Event(event_id, user_id, session_id, item_id, type_name,
                                     EVENT_TYPE_CODES[type_name], ts_ms, dwell_ms)
