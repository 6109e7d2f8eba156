"""The JSON Schemas in ``schemas/``: the event schema accepts exactly what ``parse_event``
accepts, and the recommendation and dead-letter messages the code builds follow theirs."""
from __future__ import annotations

import json
import string
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shared.events import (DEFAULT_LIMITS, ERROR_CODES, EVENT_TYPES, KEY_ERROR_CODES, MAX_TS_MS,
                           MIN_TS_MS, Event, EventError, check_key, parse_event)
from shared.messages import MAX_ORIGINAL_BYTES, dead_letter, recommendation_message
from shared.scoring import (History, ScoringParams, Session, add_to_history, add_to_session,
                            score_event)
from shared.scoring.example import _example_model
from stream.lists import recommendation_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
#: What the worker adds to the parser's codes (stream/agents.py PROCESSING_ERROR).
PROCESSING_ERROR = "processing_error"


def load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


EVENT_SCHEMA, RECOMMENDATION_SCHEMA, DEAD_LETTER_SCHEMA = (
    load("event"), load("recommendation"), load("dead-letter"))
EVENT, RECOMMENDATION, DEAD_LETTER = (
    Draft202012Validator(schema) for schema in (EVENT_SCHEMA, RECOMMENDATION_SCHEMA,
                                                DEAD_LETTER_SCHEMA))


@pytest.mark.parametrize("schema", [EVENT_SCHEMA, RECOMMENDATION_SCHEMA, DEAD_LETTER_SCHEMA])
def test_each_schema_is_a_valid_draft_2020_12_schema_with_descriptions(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["description"]
    assert all(field.get("description") for field in schema["properties"].values())


def test_the_event_schema_states_the_parsers_bounds():
    """The numbers in the schema are the defaults of parse_event, one by one."""
    fields, defs = EVENT_SCHEMA["properties"], EVENT_SCHEMA["$defs"]
    ids = defs["id"]["anyOf"][0]
    assert ids["maxLength"] == DEFAULT_LIMITS.max_id_chars
    assert [branch for branch in fields["category"]["anyOf"] if "maxLength" in branch] == [
        {"type": "string", "maxLength": DEFAULT_LIMITS.max_category_chars}]
    assert (fields["dwell_ms"]["minimum"], fields["dwell_ms"]["maximum"]) == (
        0, DEFAULT_LIMITS.max_dwell_ms)
    assert (fields["price"]["minimum"], fields["price"]["maximum"]) == (
        0, DEFAULT_LIMITS.max_price)
    assert (fields["quantity"]["minimum"], fields["quantity"]["maximum"]) == (
        1, DEFAULT_LIMITS.max_quantity)
    integer_ts = fields["ts"]["anyOf"][0]
    assert (integer_ts["minimum"], integer_ts["maximum"]) == (MIN_TS_MS, MAX_TS_MS)
    assert fields["type"]["enum"] == list(EVENT_TYPES)
    assert (defs["int64"]["minimum"], defs["int64"]["maximum"]) == (-2**63, 2**64 - 1)
    # What a schema cannot say is in the descriptions, with the same numbers.
    assert f"{DEFAULT_LIMITS.max_bytes} bytes" in EVENT_SCHEMA["description"]
    assert f"{DEFAULT_LIMITS.max_clock_skew_s:.0f} s" in EVENT_SCHEMA["description"]


def test_the_dead_letter_codes_are_every_code_the_worker_gives():
    assert set(DEAD_LETTER_SCHEMA["properties"]["error_code"]["enum"]) == (
        set(ERROR_CODES) | set(KEY_ERROR_CODES) | {PROCESSING_ERROR})
    kept = DEAD_LETTER_SCHEMA["allOf"][0]
    assert kept["else"]["properties"]["original"]["maxLength"] == MAX_ORIGINAL_BYTES
    assert kept["then"]["properties"]["original"]["maxLength"] == 4 * -(-MAX_ORIGINAL_BYTES // 3)


# --- the event schema against the parser ------------------------------------------------------
#
# The equivalence holds for JSON documents of valid UTF-8 within the size limit; what only the
# parser can check is left out of it on purpose, as the schema's description says:
# - the size in bytes, the encoding and JSON the standard library writes but orjson refuses
#   (NaN, nesting past 1024 levels): every document here is json.dumps of a value without NaN
#   or infinities, and one over max_bytes is skipped;
# - the clock: parse_event runs with now_ms at the last representable time, so no ts is ever
#   ahead of it (future_timestamp is the clock's, not the document's);
# - integers written as 2.0: JSON Schema reads them as integers, the parser refuses them, so
#   the numbers drawn for integer fields are integers or floats with a fraction;
# - ts strings: only the RFC 3339 profile of the schema and strings of other shapes that both
#   refuse are drawn, never another spelling datetime.fromisoformat reads (20140407T105109Z),
#   a day a month lacks (02-30), or a time within a day of 2000-01-01 or of 9999-12-31, where
#   the offset decides on which side of the bound the instant lies.

WHITE_SPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]
CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
REQUIRED = ("event_id", "session_id", "item_id", "type", "ts")
OPTIONAL = ("user_id", "dwell_ms", "price", "quantity", "category")

#: Integers Python writes and orjson reads as numbers (past a double's range they are not_json).
integers = st.integers(-2**1000, 2**1000)
fractional_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda x: not x.is_integer())
scalars = st.none() | st.booleans() | integers | fractional_floats | st.text(max_size=8)
containers = st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=4), scalars,
                                                            max_size=3)
wrong = scalars | containers
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
blank = (st.text(st.sampled_from(WHITE_SPACE), max_size=6)
         | st.integers(0, 200).map(lambda n: " " * n))
near_limit = st.integers(DEFAULT_LIMITS.max_id_chars - 2, DEFAULT_LIMITS.max_id_chars + 2)
with_control = st.builds(lambda a, c, b: a + c + b, st.text(string.ascii_letters, max_size=4),
                         st.sampled_from(CONTROL), st.text(string.ascii_letters, max_size=4))
ids = (st.text(string.ascii_letters + string.digits + "-_:.", min_size=1, max_size=12)
       | text | blank | with_control | near_limit.map(lambda n: "é" * n)
       | st.integers(-2**66, 2**66) | st.sampled_from([-2**63, 2**64 - 1, -2**63 - 1, 2**64])
       | wrong)


@st.composite
def rfc3339(draw, low: datetime, high: datetime) -> str:
    """An RFC 3339 time with a zone whose written date lies in [low, high]."""
    moment = draw(st.datetimes(min_value=low, max_value=high))
    digits = draw(st.integers(0, 9))
    fraction = "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits] if (
        digits) else ""
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    zone = draw(st.sampled_from(["Z", "offset"]))
    if zone == "offset":
        sign = "-" if minutes < 0 else "+"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}{fraction}{zone}")


def _out_of_range_parts(year, month, day, hour, minute, second) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


DAY = timedelta(days=1)
MIN_DATE, MAX_DATE = datetime(2000, 1, 1), datetime(9999, 12, 31)
ID_CHARS, CATEGORY_CHARS = DEFAULT_LIMITS.max_id_chars, DEFAULT_LIMITS.max_category_chars
ID_EDGES = [
    "", " ", *WHITE_SPACE, *(f"a{c}b" for c in CONTROL), "\u2028x", "x\u00a0", "\U0001F600",
    "a" * (ID_CHARS - 1), "a" * ID_CHARS, "a" * (ID_CHARS + 1), "é" * ID_CHARS,
    "é" * (ID_CHARS + 1), " " * (ID_CHARS + 5), 0, -1, -2**63, -2**63 - 1, 2**64 - 1, 2**64,
    None, True, False, 1.5, [], ["a"], {}]
#: Values at and next to every bound of each field, and of every type.
EDGES = {
    "event_id": ID_EDGES, "session_id": ID_EDGES, "item_id": ID_EDGES, "user_id": ID_EDGES,
    "type": [*EVENT_TYPES, "VIEW", "view ", "", None, 0, True, ["view"]],
    "ts": [MIN_TS_MS - 1, MIN_TS_MS, MAX_TS_MS, MAX_TS_MS + 1, MIN_TS_MS // 1000 - 1,
           MIN_TS_MS // 1000, 10**10 - 1, 10**10, 0, -1, 2**63, 2**64, 2**65, None, True, 1.5,
           1396867869277.5, "2000-01-01T00:00:00Z", "1999-12-31T23:59:59.999Z",
           "9999-12-31T23:59:59.999Z", "2014-04-07T10:51:09.277+02:00",
           "2014-04-07T10:51:09.277-23:59", "2014-04-07T10:51:09", "2014-04-07T10:51:09Z\n",
           "2014-04-07T10:51:09+24:00", "1396867869277", "", "now"],
    "dwell_ms": [-1, 0, DEFAULT_LIMITS.max_dwell_ms, DEFAULT_LIMITS.max_dwell_ms + 1, None,
                 1.5, True, "5", []],
    "price": [-1, -0.5, -0.0, 0, 0.0, DEFAULT_LIMITS.max_price, int(DEFAULT_LIMITS.max_price),
              int(DEFAULT_LIMITS.max_price) + 1, 10_000_000.000000002, 2**70, None, True, "1",
              {}],
    "quantity": [0, 1, DEFAULT_LIMITS.max_quantity, DEFAULT_LIMITS.max_quantity + 1, -1, None,
                 1.5, True, "1", []],
    "category": ["", " " * (CATEGORY_CHARS + 5), "\x00", "\n" * CATEGORY_CHARS,
                 "c" * CATEGORY_CHARS, "c" * (CATEGORY_CHARS + 1), 0, -2**63, -2**63 - 1,
                 2**64 - 1, 2**64, None, True, 1.5, [], {"a": 1}],
}
GOOD = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i1", "type": "view",
        "ts": 1396867869277}

timestamps = (
    st.integers(MIN_TS_MS - 10, MIN_TS_MS + 10) | st.integers(MAX_TS_MS - 10, MAX_TS_MS + 10)
    | st.integers(0, 2 * MAX_TS_MS) | integers | st.integers(946_684_800, 10**10)
    | rfc3339(MIN_DATE + DAY, MAX_DATE - DAY)            # accepted
    | rfc3339(datetime(1, 1, 1), MIN_DATE - DAY)         # before 2000: refused by both
    | rfc3339(datetime(1999, 1, 1), MIN_DATE - DAY)
    | rfc3339(MIN_DATE + DAY, MAX_DATE - DAY).map(lambda t: t.rstrip("Z")[:19])  # no zone
    | rfc3339(MIN_DATE + DAY, MAX_DATE - DAY).map(lambda t: t + "\n")
    | rfc3339(MIN_DATE + DAY, MAX_DATE - DAY).map(lambda t: " " + t)
    # fields out of range (never a day 29-31 a month may lack)
    | st.builds(_out_of_range_parts, st.integers(2001, 9998), st.integers(0, 13),
                st.integers(0, 28) | st.just(32), st.integers(0, 24), st.integers(0, 60),
                st.integers(0, 60))
    | st.integers(MIN_TS_MS, MAX_TS_MS).map(str)       # a numeric string
    | st.text(string.ascii_letters + " :-", max_size=12)
    | wrong)
field_values = {name: st.sampled_from(values) for name, values in EDGES.items()}
field_values = {
    "event_id": field_values["event_id"] | ids, "session_id": field_values["session_id"] | ids,
    "item_id": field_values["item_id"] | ids, "user_id": field_values["user_id"] | ids,
    "type": field_values["type"] | st.text(max_size=12) | wrong,
    "ts": field_values["ts"] | timestamps,
    "dwell_ms": (field_values["dwell_ms"] | st.integers(-3, 3)
                 | st.integers(DEFAULT_LIMITS.max_dwell_ms - 3, DEFAULT_LIMITS.max_dwell_ms + 3)
                 | integers | wrong),
    "price": (field_values["price"]
              | st.floats(-1.0, DEFAULT_LIMITS.max_price * 1.01, allow_nan=False)
              | integers | wrong),
    "quantity": (field_values["quantity"] | st.integers(-1, 3)
                 | st.integers(DEFAULT_LIMITS.max_quantity - 2, DEFAULT_LIMITS.max_quantity + 2)
                 | integers | wrong),
    "category": (field_values["category"] | text | blank | with_control
                 | st.integers(CATEGORY_CHARS - 2, CATEGORY_CHARS + 2).map(lambda n: "c" * n)
                 | st.integers(-2**66, 2**66) | wrong),
}
#: Valid values, so that accepted events are common.
plausible = {
    "event_id": st.text(string.ascii_letters + string.digits, min_size=1, max_size=10),
    "session_id": st.text(string.ascii_letters + string.digits, min_size=1, max_size=10),
    "item_id": st.integers(0, 10**6) | st.text(string.ascii_letters, min_size=1, max_size=10),
    "user_id": st.none() | st.text(string.ascii_letters, min_size=1, max_size=10),
    "type": st.sampled_from(EVENT_TYPES),
    "ts": st.integers(MIN_TS_MS, MAX_TS_MS) | rfc3339(MIN_DATE + DAY, MAX_DATE - DAY),
    "dwell_ms": st.none() | st.integers(0, DEFAULT_LIMITS.max_dwell_ms),
    "price": st.none() | st.floats(0, DEFAULT_LIMITS.max_price),
    "quantity": st.none() | st.integers(1, DEFAULT_LIMITS.max_quantity),
    "category": st.none() | st.text(max_size=10),
}


@st.composite
def event_documents(draw):
    """A JSON value to send as an event: mostly objects with the contract's fields, none,
    one or two of them drawn from anything (bounds and their neighbours often) and the
    others valid, some missing, some extra fields; sometimes no object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(wrong)
    names = REQUIRED + OPTIONAL
    wild = set(draw(st.lists(st.sampled_from(names), max_size=[1, 0, 1, 2, 1][
        draw(st.integers(0, 4))])))
    missing = {draw(st.sampled_from(REQUIRED))} if draw(st.integers(0, 9)) == 7 else set()
    fields = {}
    for name in names:
        if name in missing or (name in OPTIONAL and name not in wild and draw(st.booleans())):
            continue
        fields[name] = draw(field_values[name] if name in wild else plausible[name])
    extra = draw(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6).filter(
        lambda key: key not in field_values), wrong | containers, max_size=2))
    return {**extra, **fields}


def _verdicts(document) -> tuple[str, list[str]]:
    """(the parser's code or "accepted", the schema's complaints) for one JSON document."""
    raw = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    try:
        parse_event(raw, now_ms=MAX_TS_MS)  # the clock: the parser's alone
    except EventError as error:
        assert error.code not in ("oversized", "not_utf8", "not_json", "future_timestamp")
        verdict = error.code
    else:
        verdict = "accepted"
    return verdict, [f"{list(e.absolute_path)}: {e.message}"
                     for e in EVENT.iter_errors(json.loads(raw))]


def test_at_every_bound_the_schema_and_the_parser_agree():
    """Each field of a valid event set to each value next to and at its bounds, or removed."""
    disagree, verdicts = [], Counter()
    documents = [{**GOOD, name: value} for name, values in EDGES.items() for value in values]
    documents += [{k: v for k, v in GOOD.items() if k != name} for name in GOOD]
    for document in documents:
        verdict, complaints = _verdicts(document)
        verdicts[verdict] += 1
        if (verdict == "accepted") != (not complaints):
            disagree.append((document, verdict, complaints))
    assert disagree == []
    assert set(verdicts) == {"accepted", *ERROR_CODES} - {
        "oversized", "not_utf8", "not_json", "not_object", "future_timestamp"}


def test_the_event_schema_accepts_exactly_what_the_parser_accepts():
    outcomes: Counter = Counter()

    @hypothesis_settings(max_examples=500, deadline=None)
    @given(event_documents())
    def agree(document):
        size = len(json.dumps(document, ensure_ascii=False).encode("utf-8"))
        assume(size <= DEFAULT_LIMITS.max_bytes)  # the size: the parser's alone
        verdict, complaints = _verdicts(document)
        assert (verdict == "accepted") == (not complaints), (document, verdict, complaints)
        outcomes[verdict] += 1

    agree()
    # The documents reach both verdicts, and refusals for most reasons.
    assert outcomes["accepted"] >= 100
    assert len(set(outcomes) - {"accepted"}) >= 8, outcomes


@pytest.mark.parametrize("document", [
    {"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view", "ts": 1396867869},
    {"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view",
     "ts": "1999-12-31T23:59:59Z"},
    {"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view",
     "ts": "2014-04-07T10:51:09Z\n"},
    {"event_id": "e1\n", "session_id": "s1", "item_id": "i1", "type": "view",
     "ts": 1396867869277},
    {"event_id": "\u2028", "session_id": "s1", "item_id": "i1", "type": "view",
     "ts": 1396867869277},
    {"event_id": "e1", "session_id": "s1", "item_id": 2**64, "type": "view",
     "ts": 1396867869277},
])
def test_refusals_that_depend_on_the_regular_expressions_are_shared(document):
    """Cases Python's re could read otherwise than ECMA-262 (a final newline before $) or
    that only the white-space class tells apart."""
    with pytest.raises(EventError):
        parse_event(json.dumps(document).encode())
    assert not EVENT.is_valid(document)


def test_an_anonymous_visitor_and_the_extremes_are_accepted_by_both():
    document = {"event_id": "é" * 128, "session_id": 2**64 - 1, "item_id": -2**63,
                "user_id": " \u3000\x1c", "type": "buy", "ts": MIN_TS_MS,
                "dwell_ms": None, "price": DEFAULT_LIMITS.max_price,
                "quantity": DEFAULT_LIMITS.max_quantity, "category": "\n" + "c" * 127,
                "extra": {"any": [1, 2.5, None]}}
    event = parse_event(json.dumps(document).encode())
    assert event.user_id == str(2**64 - 1)
    assert EVENT.is_valid(document)


# --- the messages the code builds --------------------------------------------------------------

def _event(item_id: str, user_id: str = "u1", category: str | None = None) -> Event:
    return parse_event(orjson.dumps({
        "event_id": f"e-{item_id}", "user_id": user_id, "session_id": "s1", "item_id": item_id,
        "type": "view", "ts": 1_700_000_000_000, "category": category}))


def _lists():
    """The worker's messages for events of every strategy the example model gives."""
    model = _example_model()
    history = add_to_history(History(), "i2", 16.0, 0, history_max=10)
    session = add_to_session(Session(), "i0", max_len=10)
    cases = [(History(), Session(), "i0", None, 2, 0.0),
             (history, session, "i0", None, 2, 0.8),
             (history, session, "unknown", None, 4, 0.5),
             (History(), session, "unknown", None, 4, 0.5),
             (History(), Session(), "new", "b", 3, 0.1),
             (History(), Session(), "new", None, 20, 0.1)]
    for hist, sess, item, category, n, blend in cases:
        rec = score_event(model, hist, sess, item, ScoringParams(n=n, blend=blend),
                          query_category=category)
        yield recommendation_for(_event(item, category=category), rec, model,
                                 "20240101T000000Z-000000")
    yield recommendation_for(_event("i1", user_id=""), None, None, None)  # no model yet


def test_the_lists_the_worker_sends_follow_the_recommendation_schema():
    strategies = set()
    for value in _lists():
        message = orjson.loads(value)
        assert RECOMMENDATION.is_valid(message), list(RECOMMENDATION.iter_errors(message))
        item_ids = [item["item_id"] for item in message["items"]]
        assert len(item_ids) == len(set(item_ids))
        strategies.add(message["strategy"])
    assert {"no_model", "similar", "personalized_similar", "popular_category+popular"} <= (
        strategies)


@given(items=st.lists(st.tuples(st.text(), st.floats(allow_nan=False, allow_infinity=False)
                                | st.integers(-2**53, 2**53)), max_size=25),
       version=st.none() | st.text(), generated_at=st.integers(0, 2**62))
@hypothesis_settings(max_examples=100, deadline=None)
def test_any_list_the_codec_writes_follows_the_recommendation_schema(items, version,
                                                                    generated_at):
    value = recommendation_message(
        user_id="u1", session_id="s1", event_id="e1", query_item_id="i1", items=items,
        strategy="similar+popular", model_version=version, generated_at=generated_at)
    assert RECOMMENDATION.is_valid(orjson.loads(value))


def test_a_recommendation_schema_refuses_what_the_contract_does_not_allow():
    good = orjson.loads(next(_lists()))
    assert RECOMMENDATION.is_valid(good)
    for changes in ({"items": [{"item_id": 5, "score": 1.0}]}, {"generated_at": "soon"},
                    {"model_version": 3}, {"strategy": "Similar"}, {"user_id": None}):
        assert not RECOMMENDATION.is_valid({**good, **changes}), changes
    assert not RECOMMENDATION.is_valid({k: v for k, v in good.items() if k != "items"})


def _letter(raw: bytes | None, *, partition: int | None = 3, offset: int | None = 42,
            key: bytes | None = None) -> dict:
    """The dead letter the worker writes for a message it refuses (None: it accepts it)."""
    try:
        event = parse_event(raw)
        check_key(event, key if key is not None else event.user_id.encode())
    except EventError as error:
        return orjson.loads(dead_letter(raw, error, topic="events", partition=partition,
                                        offset=offset))
    return orjson.loads(dead_letter(raw, EventError(PROCESSING_ERROR, "RuntimeError: boom"),
                                    topic="events", partition=partition, offset=offset))


@pytest.mark.parametrize("raw, key, code, encoding, truncated", [
    (b'{"event_id": "e1"', None, "not_json", "utf-8", False),
    (b'{"item_id": "\xff"}', None, "not_utf8", "base64", False),
    (None, None, "not_json", "utf-8", False),
    ("é".encode() * 40_000, None, "oversized", "utf-8", True),
    (b"\xff" * 70_000, None, "oversized", "base64", True),
    (b'{"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view",'
     b' "ts": 1396867869}', None, "bad_timestamp", "utf-8", False),
    (b'{"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view",'
     b' "ts": 1396867869277}', b"u9", "key_mismatch", "utf-8", False),
    (b'{"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view",'
     b' "ts": 1396867869277}', None, PROCESSING_ERROR, "utf-8", False),
])
def test_the_dead_letters_the_worker_sends_follow_the_dead_letter_schema(raw, key, code,
                                                                         encoding, truncated):
    letter = _letter(raw, key=key)
    assert DEAD_LETTER.is_valid(letter), list(DEAD_LETTER.iter_errors(letter))
    assert (letter["error_code"], letter["original_encoding"], letter["truncated"]) == (
        code, encoding, truncated)


@given(raw=st.binary(max_size=300), partition=st.none() | st.integers(0, 2**31),
       offset=st.none() | st.integers(0, 2**62))
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_refused_bytes_make_a_dead_letter_that_follows_the_schema(raw, partition, offset):
    letter = _letter(raw, partition=partition, offset=offset)
    assert DEAD_LETTER.is_valid(letter), list(DEAD_LETTER.iter_errors(letter))


def test_the_dead_letter_schema_refuses_what_the_contract_does_not_allow():
    good = _letter(b"\xff\xfe")
    assert DEAD_LETTER.is_valid(good) and good["original_encoding"] == "base64"
    for changes in ({"original": "not base64!"}, {"original": good["original"] + "\n"},
                    {"error_code": "nope"}, {"source_offset": -1}, {"truncated": 0},
                    {"original_encoding": "latin-1"}, {"failed_at": 1.5}):
        assert not DEAD_LETTER.is_valid({**good, **changes}), changes
    text = _letter(b"{")
    assert not DEAD_LETTER.is_valid({**text, "original": "x" * (MAX_ORIGINAL_BYTES + 1)})
    assert DEAD_LETTER.is_valid({**text, "source_partition": None, "source_offset": None})


def test_numpy_scores_make_plain_numbers_the_schema_accepts():
    value = recommendation_message(
        user_id="u1", session_id="s1", event_id="e1", query_item_id="i1",
        items=zip(np.array(["i2", "i3"]), np.array([0.5, -0.25], dtype=np.float32)),
        strategy="similar", model_version=None, generated_at=0)
    assert RECOMMENDATION.is_valid(orjson.loads(value))
