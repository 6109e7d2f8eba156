"""The event contract: parsing, validation codes, the canonical encoding."""
from __future__ import annotations

import json
import pickle
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import FrozenInstanceError
from datetime import UTC
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.config import load_settings
from shared.events import (ERROR_CODES, EVENT_TYPE_CODES, EVENT_TYPES, KEY_ERROR_CODES, MAX_TS_MS,
                           MIN_TS_MS, Event, EventError, EventLimits, check_key, encode_event,
                           parse_event)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
import adversarial

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


def spliced(name: str, literal: bytes, fields: dict = GOOD) -> bytes:
    """``fields`` as JSON with the value of ``name`` written as the JSON text ``literal``."""
    parts = [json.dumps(k).encode() + b":" + (literal if k == name else json.dumps(v).encode())
             for k, v in fields.items()]
    if name not in fields:
        parts.append(json.dumps(name).encode() + b":" + literal)
    return b"{" + b",".join(parts) + b"}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    ("2000-01-01T00:00:00Z", MIN_TS_MS),
    ("2000-01-01T01:00:00+01:00", MIN_TS_MS),
    (MIN_TS_MS, MIN_TS_MS),
])
def test_timestamps_are_epoch_ms_or_zoned_iso(ts, ts_ms):
    assert parse_event(event_bytes(ts=ts)).ts_ms == ts_ms


def test_the_last_representable_time_parses_when_the_clock_allows_it():
    assert parse_event(event_bytes(ts=MAX_TS_MS), now_ms=MAX_TS_MS).ts_ms == MAX_TS_MS
    assert parse_event(event_bytes(ts="9999-12-31T23:59:59.999Z"),
                       now_ms=MAX_TS_MS).ts_ms == MAX_TS_MS


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
    (event_bytes(ts=1396867869), "bad_timestamp"),
    (event_bytes(ts=0), "bad_timestamp"),
    (event_bytes(ts=MIN_TS_MS - 1), "bad_timestamp"),
    (event_bytes(ts="1999-12-31T23:59:59.999Z"), "bad_timestamp"),
    (event_bytes(ts="2000-01-01T00:59:59.999+01:00"), "bad_timestamp"),
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
    (event_bytes(quantity=True), "bad_quantity"),
    (event_bytes(dwell_ms=False), "bad_dwell"),
    (event_bytes(event_id="e" * 129), "field_too_long"),
    (event_bytes(session_id="s" * 129), "field_too_long"),
    (event_bytes(item_id="i" * 129), "field_too_long"),
    (event_bytes(user_id="u" * 129), "field_too_long"),
    (event_bytes(category="c" * 129), "field_too_long"),
    (event_bytes(item_id="a\x00b"), "control_character"),
    (event_bytes(session_id="s\n1"), "control_character"),
    (event_bytes(user_id="u\x1b[31m"), "control_character"),
    (event_bytes(event_id="e\x85"), "control_character"),
    (event_bytes(item_id="i\x7f"), "control_character"),
    (event_bytes(ts=MAX_TS_MS), "future_timestamp"),
    (event_bytes(ts="2999-01-01T00:00:00Z"), "future_timestamp"),
    (b'{"event_id": "e1", "ts": Infinity}', "not_json"),
    (spliced("price", b"1e400"), "not_json"),
    (spliced("price", b"-Infinity"), "not_json"),
    (spliced("dwell_ms", b"nan"), "not_json"),
    (b"\xef\xbb\xbf" + event_bytes(), "not_json"),
    (spliced("item_id", b"123456789012345678901234567890"), "bad_field_type"),
    (spliced("ts", b"100000000000000000000000000000"), "bad_timestamp"),
    (spliced("ts", b"18446744073709551615"), "bad_timestamp"),
    (spliced("quantity", b"99999999999999999999"), "bad_quantity"),
    (spliced("price", b"1e308"), "bad_price"),
]


@pytest.mark.parametrize("raw, code", BAD_INPUTS)
def test_each_kind_of_bad_input_has_its_code(raw, code):
    assert code_of(raw, max_bytes=1000, max_dwell_ms=1000, max_price=100.0,
                   max_quantity=10) == code


def test_every_error_code_is_exercised_above():
    assert {code for _, code in BAD_INPUTS} == set(ERROR_CODES)


def test_deep_nesting_within_the_size_limit_is_not_json():
    assert code_of(b"[" * 2000 + b"]" * 2000) == "not_json"
    assert code_of(spliced("extra", b"[" * 1024 + b"]" * 1024)) == "not_json"


@pytest.mark.parametrize("name, code", [
    ("item_id", "bad_field_type"), ("type", "bad_field_type"), ("ts", "bad_timestamp"),
    ("dwell_ms", "bad_dwell"), ("price", "bad_price"), ("quantity", "bad_quantity"),
    ("category", "bad_field_type")])
def test_nesting_orjson_reads_but_python_cannot_repr_is_the_fields_error(name, code):
    """Checked here, not by a property: Hypothesis raises the recursion limit while it runs."""
    nested = b"[" * 1000 + b"0" + b"]" * 1000  # 1001 levels with the object; orjson reads 1024
    error = pytest.raises(EventError, parse_event, spliced(name, nested)).value
    assert error.code == code and "an array" in error.message
    assert parse_event(spliced("extra", nested)) == parse_event(event_bytes())


def test_id_bounds_count_characters_and_apply_to_integer_ids_too():
    assert parse_event(event_bytes(item_id="é" * 128)).item_id == "é" * 128
    assert code_of(event_bytes(item_id="é" * 129)) == "field_too_long"
    assert code_of(event_bytes(item_id=123456), max_id_chars=5) == "field_too_long"
    assert parse_event(event_bytes(item_id=12345), max_id_chars=5).item_id == "12345"
    assert parse_event(event_bytes(category="c" * 20),
                       max_category_chars=20).category == "c" * 20
    assert code_of(event_bytes(category="c" * 21), max_category_chars=20) == "field_too_long"


def test_a_length_error_names_the_field_and_the_limit():
    error = pytest.raises(EventError, parse_event, event_bytes(item_id="x" * 15000)).value
    assert error.code == "field_too_long"
    assert error.message == ("'item_id' is 15000 characters, more than the limit of 128"
                             " (RECSYS_MAX_ID_CHARS)")
    error = pytest.raises(EventError, parse_event, event_bytes(category="c" * 200)).value
    assert "'category'" in error.message and "128 (RECSYS_MAX_CATEGORY_CHARS)" in error.message


def test_control_characters_are_refused_in_ids_only_and_other_text_is_kept():
    error = pytest.raises(EventError, parse_event, event_bytes(item_id="a\tb")).value
    assert (error.code, error.message) == (
        "control_character", "'item_id' contains the control character U+0009 at index 1")
    kept = ["a\u00a0b", "\U0001F468\u200d\U0001F469", "\u200bx", "x\u2028y", "ü-1"]
    for text in kept:
        assert parse_event(event_bytes(item_id=text, user_id=text)).item_id == text
    assert parse_event(event_bytes(category="shoes\n")).category == "shoes\n"


def test_a_time_ahead_of_the_clock_by_more_than_the_skew_is_refused():
    now = 1_700_000_000_000
    assert parse_event(event_bytes(ts=now + 86_400_000), now_ms=now).ts_ms == now + 86_400_000
    error = pytest.raises(EventError, parse_event, event_bytes(ts=now + 86_400_001),
                          now_ms=now).value
    assert error.code == "future_timestamp"
    assert error.message.startswith("'ts' 2023-11-15T22:13:20.001Z is 86400 s ahead")
    assert code_of(event_bytes(ts=now + 1001), now_ms=now, max_clock_skew_s=1) == (
        "future_timestamp")
    assert parse_event(event_bytes(ts=now), now_ms=now, max_clock_skew_s=0).ts_ms == now


def test_the_clock_is_the_real_one_by_default():
    assert parse_event(event_bytes(ts=now_ms() + 3_600_000)).ts_ms > now_ms()
    assert code_of(event_bytes(ts=now_ms() + 2 * 86_400_000)) == "future_timestamp"
    assert code_of(event_bytes(ts=now_ms() + 86_400_000 + 60_000)) == "future_timestamp"
    assert parse_event(event_bytes(ts=now_ms() - 1)).ts_ms < now_ms()


@pytest.mark.parametrize("ts, seconds", [
    (1396867869, "2014-04-07T10:51:09Z"),
    (MIN_TS_MS // 1000, "2000-01-01T00:00:00Z"),
    (9_999_999_999, "2286-11-20T17:46:39Z"),
])
def test_a_time_in_seconds_is_refused_with_the_fix(ts, seconds):
    """Epoch seconds of any date from 2000 to 2286 fall in January..April 1970 as
    milliseconds, before the earliest time accepted: the refusal names the likely mistake."""
    error = pytest.raises(EventError, parse_event, event_bytes(ts=ts)).value
    assert (error.code, error.field) == ("bad_timestamp", "ts")
    assert error.message.startswith(f"'ts' {ts} looks like seconds since the epoch ({seconds} in"
                                    " seconds, 1970-")
    assert error.message.endswith("; send milliseconds (ts * 1000)")
    assert parse_event(event_bytes(ts=ts * 1000), now_ms=MAX_TS_MS).ts_ms == ts * 1000


@pytest.mark.parametrize("ts, shown", [
    (0, "'ts' 0 is 1970-01-01T00:00:00.000Z in epoch milliseconds,"),
    (946_684_799, "'ts' 946684799 is 1970-01-11T22:58:04.799Z in epoch milliseconds,"),
    (10_000_000_000, "'ts' 10000000000 is 1970-04-26T17:46:40.000Z in epoch milliseconds,"),
    (MIN_TS_MS - 1, "'ts' 946684799999 is 1999-12-31T23:59:59.999Z in epoch milliseconds,"),
    ("1985-11-05T00:53:20Z", "'ts' '1985-11-05T00:53:20Z' is"),
])
def test_a_time_before_2000_is_refused_and_says_so(ts, shown):
    error = pytest.raises(EventError, parse_event, event_bytes(ts=ts)).value
    assert (error.code, error.field) == ("bad_timestamp", "ts")
    assert error.message == f"{shown} before 2000-01-01T00:00:00Z, the earliest time accepted"
    assert "looks like seconds" not in error.message


def test_the_earliest_time_is_the_first_millisecond_of_2000():
    assert parse_event(event_bytes(ts=MIN_TS_MS)).ts_ms == MIN_TS_MS == 946_684_800_000
    assert code_of(event_bytes(ts=MIN_TS_MS - 1)) == "bad_timestamp"


@pytest.mark.parametrize("raw, field", [
    (event_bytes(event_id=...), "event_id"), (event_bytes(session_id=""), "session_id"),
    (event_bytes(item_id=1.5), "item_id"), (event_bytes(user_id="u" * 200), "user_id"),
    (event_bytes(item_id="a\x00"), "item_id"), (event_bytes(type="nope"), "type"),
    (event_bytes(type=...), "type"), (event_bytes(type=3), "type"),
    (event_bytes(ts="x"), "ts"), (event_bytes(ts=...), "ts"), (event_bytes(ts=1.5), "ts"),
    (event_bytes(ts="2014-04-07T10:51:09"), "ts"), (event_bytes(ts=MAX_TS_MS), "ts"),
    (event_bytes(dwell_ms=-1), "dwell_ms"), (event_bytes(price=-1), "price"),
    (event_bytes(quantity=0), "quantity"), (event_bytes(category=[1]), "category"),
    (event_bytes(category="c" * 200), "category"),
    (b"{", None), (b"[]", None), (b"\xff", None), (b"x" * 20000, None),
])
def test_an_error_names_the_field_at_fault(raw, field):
    error = pytest.raises(EventError, parse_event, raw).value
    assert error.field == field
    if field is not None:
        assert f"'{field}'" in error.message
    assert pickle.loads(pickle.dumps(error)).field == field


def test_the_future_check_comes_right_after_the_time_in_field_order():
    assert code_of(event_bytes(ts=MAX_TS_MS, dwell_ms=-1)) == "future_timestamp"
    assert code_of(event_bytes(type="nope", ts=MAX_TS_MS)) == "unknown_type"


# --- the message key ----------------------------------------------------------------------------

def test_the_key_is_the_user_id_or_for_an_anonymous_visitor_the_session_id():
    check_key(parse_event(event_bytes()), b"u1")
    check_key(parse_event(event_bytes(user_id=None)), b"s1")
    check_key(parse_event(event_bytes(user_id="ü")), "ü".encode())
    check_key(parse_event(event_bytes()), bytearray(b"u1"))
    check_key(parse_event(event_bytes()), memoryview(b"u1"))


@pytest.mark.parametrize("key, code", [
    (None, "key_missing"), (b"", "key_missing"), (b"s1", "key_mismatch"),
    (b"U1", "key_mismatch"), (b"u1 ", "key_mismatch"), (b"\xffu1", "key_mismatch"),
    (b"e1", "key_mismatch")])
def test_a_missing_or_other_key_is_refused(key, code):
    with pytest.raises(EventError) as caught:
        check_key(parse_event(event_bytes()), key)
    assert caught.value.code == code
    assert "'u1'" in caught.value.message


def test_an_anonymous_event_under_another_key_is_refused():
    with pytest.raises(EventError) as caught:
        check_key(parse_event(event_bytes(user_id=None)), b"u1")
    assert caught.value.message == "the key 'u1' is not the event's user id 's1'"


def test_a_key_of_another_type_is_the_callers_mistake():
    with pytest.raises(TypeError):
        check_key(parse_event(event_bytes()), "u1")


def test_first_problem_wins_in_field_order():
    assert code_of(event_bytes(event_id="", item_id=...)) == "empty_field"


def test_limits_come_from_settings():
    limits = load_settings({"RECSYS_MAX_QUANTITY": "3"}).event_limits()
    assert limits.max_quantity == 3
    assert code_of(event_bytes(type="buy", quantity=4), **vars(limits)) == "bad_quantity"
    assert parse_event(event_bytes(type="buy", quantity=4)).quantity == 4
    limits = load_settings({
        "RECSYS_MAX_ID_CHARS": "4", "RECSYS_MAX_CATEGORY_CHARS": "2",
        "RECSYS_MAX_CLOCK_SKEW_S": "0.5"}).event_limits()
    assert (limits.max_id_chars, limits.max_category_chars, limits.max_clock_skew_s) == (4, 2, 0.5)
    assert code_of(event_bytes(item_id="i2345"), **vars(limits)) == "field_too_long"
    assert code_of(event_bytes(category="abc"), **vars(limits)) == "field_too_long"
    assert code_of(event_bytes(ts=now_ms() + 60_000), **vars(limits)) == "future_timestamp"
    assert EventLimits() == load_settings({}).event_limits()
    assert (EventLimits().max_id_chars, EventLimits().max_category_chars,
            EventLimits().max_clock_skew_s) == (128, 128, 86_400.0)


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
iso_times = st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat())
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


def parse_or_code(raw: bytes, **limits) -> Event | str:
    """The event, or the code of the EventError; any other exception fails the test.

    A valid event is checked against the bounds it passed.
    """
    try:
        event = parse_event(raw, **limits)
    except EventError as error:
        assert error.code in ERROR_CODES
        return error.code
    bounds = EventLimits(**limits)
    for text in (event.event_id, event.user_id, event.session_id, event.item_id):
        assert type(text) is str and text and not text.isspace()
        assert len(text) <= bounds.max_id_chars
        assert not any(unicodedata.category(char) == "Cc" for char in text)
    assert event.category is None or len(event.category) <= bounds.max_category_chars
    assert MIN_TS_MS <= event.ts_ms <= now_ms() + bounds.max_clock_skew_s * 1000
    assert len(raw) <= bounds.max_bytes
    return event


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_parser(raw):
    parse_or_code(raw)


@given(json_values)
def test_no_json_value_crashes_the_parser(value):
    parse_or_code(json.dumps(value).encode())


# What Python's json writes and a careless producer sends: NaN and infinities, integers of
# any size, any text (control characters arrive escaped), long strings, deep nesting.
wild_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                | st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
                | st.integers(0, 400).map(lambda n: "x" * n))
wild_values = st.recursive(
    wild_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(sorted(GOOD) + ["dwell_ms", "price", "quantity", "category", "x"])
        | st.text(max_size=8), children, max_size=6),
    max_leaves=16)
nesting = st.builds(lambda depth, kind: (kind[0] * depth + "0" + kind[1] * depth).encode(),
                    st.integers(1, 1100), st.sampled_from([("[", "]"), ('{"a":', "}")]))
literals = (wild_values.map(lambda value: json.dumps(value).encode()) | nesting
            | st.sampled_from([b"NaN", b"-Infinity", b"1e400", b"-0", b"1E2", b"0.0",
                               b"18446744073709551616", b"-9223372036854775809", b"true",
                               b'"\\u0000"', b'"\\ud800"', b'"\\ud83d\\ude00"']))
contract_fields = sorted(GOOD) + ["dwell_ms", "price", "quantity", "category", "extra"]


@hypothesis_settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(contract_fields), literals), max_size=4))
def test_no_value_in_any_field_crashes_the_parser(changes):
    fields = {name: json.dumps(value).encode() for name, value in GOOD.items()}
    fields.update(changes)
    raw = b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in fields.items()) + b"}"
    parse_or_code(raw)
    parse_or_code(raw, max_bytes=300, max_id_chars=3, max_category_chars=1, max_clock_skew_s=0)


@given(wild_values)
def test_no_wild_json_value_crashes_the_parser(value):
    parse_or_code(json.dumps(value).encode())


@hypothesis_settings(max_examples=300)
@given(st.data())
def test_no_mutation_of_a_valid_event_crashes_the_parser(data):
    raw = bytearray(event_bytes(category="shoes", dwell_ms=5, price=1.5, quantity=2))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(raw)))
        cut = data.draw(st.integers(0, 3))
        raw[at:at + cut] = data.draw(st.binary(max_size=4))
    parse_or_code(bytes(raw))


@given(st.sampled_from([event_bytes(), event_bytes(user_id=None), event_bytes(user_id="ü")]),
       st.none() | st.binary(max_size=12) | st.sampled_from([b"u1", b"s1", "ü".encode()]))
def test_no_key_crashes_check_key(raw, key):
    event = parse_event(raw)
    try:
        check_key(event, key)
    except EventError as error:
        assert error.code in KEY_ERROR_CODES
        assert key != event.user_id.encode()
    else:
        assert key == event.user_id.encode()


@given(event_dicts)
def test_no_event_like_object_crashes_the_parser_and_valid_ones_round_trip(fields):
    result = parse_or_code(json.dumps(fields).encode())
    if isinstance(result, Event):
        assert parse_event(result.to_json_bytes()) == result
        assert result.user_id and result.session_id and result.item_id and result.event_id
        assert MIN_TS_MS <= result.ts_ms <= MAX_TS_MS


ids = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1,
              max_size=128).filter(lambda text: not text.isspace())


@given(event_id=ids, user_id=ids, session_id=ids, item_id=ids,
       type_name=st.sampled_from(EVENT_TYPES), ts_ms=st.integers(MIN_TS_MS, MAX_TS_MS),
       dwell_ms=st.none() | st.integers(0, 6 * 3600 * 1000))
def test_valid_events_keep_their_values(event_id, user_id, session_id, item_id, type_name,
                                        ts_ms, dwell_ms):
    raw = encode_event({"event_id": event_id, "user_id": user_id, "session_id": session_id,
                        "item_id": item_id, "type": type_name, "ts": ts_ms,
                        "dwell_ms": dwell_ms})
    assert parse_event(raw, now_ms=MAX_TS_MS) == Event(
        event_id, user_id, session_id, item_id, type_name, EVENT_TYPE_CODES[type_name], ts_ms,
        dwell_ms)


# --- the adversarial messages of tests/faults -------------------------------------------------

POOL = [
    GOOD,
    {"event_id": "e2", "session_id": "s2", "item_id": 7, "type": "buy",
     "ts": "2014-04-07T10:51:09.277Z", "price": 12.5, "quantity": 2, "category": "shoes"},
    {"event_id": 31, "user_id": 5, "session_id": "s3", "item_id": "ü-9", "type": "click",
     "ts": 1_700_000_000_000},
    {"event_id": "e4", "user_id": "", "session_id": "s4", "item_id": "i4",
     "type": "add_to_cart", "ts": MIN_TS_MS, "dwell_ms": 0, "extra": {"a": [1]}},
    {"event_id": "e5", "user_id": "u1", "session_id": "s5", "item_id": "i" * 128, "type": "view",
     "ts": 1_600_000_000_000, "dwell_ms": 1200, "category": None},
]
#: The codes each kind may give; the key kinds and most value kinds give exactly one.
KIND_CODES = {
    "broken_json": {"not_json"},
    "wrong_type": {"bad_field_type", "bad_timestamp", "bad_dwell", "bad_price", "bad_quantity",
                   "not_object"},
    "missing_field": {"missing_field"},
    "empty_field": {"empty_field"},
    "not_utf8": {"not_utf8"},
    "deep_nesting": {"not_json", "bad_field_type", "bad_timestamp", "bad_dwell", "bad_price",
                     "bad_quantity"},
    "nan_literal": {"not_json"},
    "huge_field": {"field_too_long", "oversized"},
    "wrong_key": {"key_mismatch"},
    "null_key": {"key_missing"},
    "future_ts": {"future_timestamp"},
}


def dead_letter_code(key: bytes | None, value: bytes, limits: EventLimits) -> str | None:
    """The code the worker gives a message: the value's, else the key's; None: no dead letter."""
    try:
        check_key(parse_event(value, **vars(limits)), key)
    except EventError as error:
        return error.code
    return None


@pytest.mark.parametrize("limits", [
    EventLimits(), EventLimits(max_bytes=6000, max_id_chars=200, max_clock_skew_s=3600.0)])
def test_every_adversarial_message_gets_the_code_it_is_planned_with(limits):
    messages = adversarial.adversarial_events(1100, seed=11, valid_pool=POOL, limits=limits)
    got = [dead_letter_code(key, value, limits) for key, value, _ in messages]
    assert got == [code for _, _, code in messages]
    assert {code for _, _, code in messages} <= set(ERROR_CODES) | set(KEY_ERROR_CODES)


@pytest.mark.parametrize("kind", adversarial.KINDS)
def test_each_kind_gives_its_own_codes(kind):
    messages = adversarial.adversarial_events(60, seed=2, valid_pool=POOL, kinds=[kind])
    codes = Counter(code for _, _, code in messages)
    assert set(codes) <= KIND_CODES[kind]
    assert [dead_letter_code(k, v, EventLimits()) for k, v, _ in messages] == [
        code for _, _, code in messages]
    if kind == "huge_field":
        assert codes == {"field_too_long": 30, "oversized": 30}


def test_kinds_come_in_equal_shares():
    shares = Counter(adversarial.adversarial_kinds(1105, seed=4))
    assert set(shares) == set(adversarial.KINDS) and set(shares.values()) <= {100, 101}
    assert Counter(adversarial.adversarial_kinds(33, seed=4, kinds=["null_key", "wrong_key"])) == {
        "null_key": 17, "wrong_key": 16}


def test_the_generator_is_deterministic():
    first = adversarial.adversarial_events(220, seed=9, valid_pool=POOL)
    assert adversarial.adversarial_events(220, seed=9, valid_pool=POOL) == first
    assert adversarial.adversarial_events(220, seed=10, valid_pool=POOL) != first


def test_a_huge_item_id_is_15000_characters_in_an_event_under_the_size_limit():
    messages = adversarial.adversarial_events(40, seed=3, valid_pool=POOL, kinds=["huge_field"])
    long_items = [value for _, value, code in messages if code == "field_too_long"]
    assert long_items and all(len(value) <= EventLimits().max_bytes for value in long_items)
    assert {len(orjson.loads(value)["item_id"]) for value in long_items} == {15_000}
    oversized = [value for _, value, code in messages if code == "oversized"]
    assert all(len(value) > EventLimits().max_bytes for value in oversized)


def test_the_generator_refuses_an_invalid_pool_and_limits_without_room():
    with pytest.raises(ValueError, match="event 1 of the pool"):
        adversarial.adversarial_events(5, seed=0, valid_pool=[GOOD, {**GOOD, "ts": None}])
    with pytest.raises(ValueError, match="empty"):
        adversarial.adversarial_events(5, seed=0, valid_pool=[])
    with pytest.raises(ValueError, match="deep"):
        adversarial.adversarial_events(5, seed=0, valid_pool=[GOOD], kinds=["deep_nesting"],
                                       limits=EventLimits(max_bytes=1500))


def test_spaced_copies_are_the_events_again_and_the_worker_still_remembers_them():
    events = [{"event_id": f"e{n}", "user_id": f"u{n % 7}" if n % 5 else None,
               "session_id": f"s{n % 11}", "item_id": f"i{n % 13}", "type": "view",
               "ts": 1_700_000_000_000 + 1000 * n} for n in range(700)]
    copies = adversarial.spaced_copies(events, 80, seed=5)
    assert copies == adversarial.spaced_copies(events, 80, seed=5)
    by_id = {event["event_id"]: (n, event) for n, event in enumerate(events)}
    originals = set()
    for key, value, code in copies:
        assert code is None
        copy = parse_event(value)
        n, original = by_id[copy.event_id]
        assert copy == parse_event(encode_event(original)) and value == encode_event(original)
        check_key(copy, key)
        later = [e for e in events[n + 1:] if parse_event(encode_event(e)).user_id == copy.user_id]
        assert len(later) < 64
        originals.add(n)
    assert len(originals) == 80  # no original twice while there are enough
    assert len(adversarial.spaced_copies(events[:3], 10, seed=1)) == 10
    with pytest.raises(ValueError, match="repeat"):
        adversarial.spaced_copies(events[:3] + events[:1], 1, seed=1)
