"""The codec of dead-letter, recommendation and model-update messages."""
from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events import ERROR_CODES, EventError, parse_event
from shared.messages import (MessageError, dead_letter, epoch_ms_now, model_update_message,
                             parse_dead_letter, parse_model_update, parse_recommendation,
                             recommendation_message)

RECOMMENDATION_FIELDS = {"user_id", "session_id", "event_id", "query_item_id", "items",
                         "strategy", "model_version", "generated_at"}


def error_of(raw: bytes) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    return caught.value


# --- dead letters -------------------------------------------------------------------------------

def test_a_text_original_is_kept_as_text():
    raw = b'{"event_id": "e1", "type": "view"}'
    value = dead_letter(raw, error_of(raw), topic="events", partition=2, offset=17, now_ms=5)
    assert orjson.loads(value) == {
        "original": '{"event_id": "e1", "type": "view"}', "original_encoding": "utf-8",
        "original_size": len(raw), "truncated": False, "error_code": "missing_field",
        "error_message": "'session_id' is required", "source_topic": "events",
        "source_partition": 2, "source_offset": 17, "failed_at": 5}
    assert parse_dead_letter(value)["original"] == raw


def test_bytes_that_are_not_utf8_travel_as_base64():
    raw = b'{"item_id": "\xff\xfe"}'
    value = dead_letter(raw, error_of(raw), topic="events", partition=0, offset=0, now_ms=1)
    fields = orjson.loads(value)
    assert (fields["original_encoding"], fields["error_code"]) == ("base64", "not_utf8")
    assert base64.b64decode(fields["original"]) == raw
    assert parse_dead_letter(value)["original"] == raw


@pytest.mark.parametrize("raw, kept", [
    (b"a" * 10, b"a" * 4),
    ("ééé".encode(), "éé".encode()),
    (b"\xff" * 10, b"\xff" * 4),
])
def test_long_originals_are_cut_and_say_so(raw, kept):
    value = dead_letter(raw, EventError("oversized", "too long"), topic="events",
                        partition=None, offset=None, now_ms=1, max_original_bytes=4)
    letter = parse_dead_letter(value)
    assert (letter["original"], letter["truncated"], letter["original_size"]) == (
        kept, True, len(raw))
    assert (letter["source_partition"], letter["source_offset"]) == (None, None)


def test_a_tombstone_is_kept_as_an_empty_original():
    letter = parse_dead_letter(dead_letter(None, error_of(None), topic="events", partition=1,
                                           offset=9, now_ms=1))
    assert (letter["original"], letter["error_code"]) == (b"", "not_json")


def test_failure_time_defaults_to_now():
    before = epoch_ms_now()
    letter = parse_dead_letter(dead_letter(b"{", error_of(b"{"), topic="events", partition=0,
                                           offset=3))
    assert before <= letter["failed_at"] <= epoch_ms_now()


@given(raw=st.binary(max_size=200), code=st.sampled_from(ERROR_CODES), message=st.text(),
       partition=st.none() | st.integers(0, 2**31), offset=st.none() | st.integers(0, 2**62))
def test_any_original_round_trips(raw, code, message, partition, offset):
    letter = parse_dead_letter(dead_letter(raw, EventError(code, message), topic="events",
                                           partition=partition, offset=offset, now_ms=7))
    assert letter["original"] == raw
    assert (letter["error_code"], letter["error_message"]) == (code, message)
    assert (letter["source_partition"], letter["source_offset"]) == (partition, offset)


def good_letter(**changes) -> bytes:
    fields = orjson.loads(dead_letter(b"x", EventError("not_json", "m"), topic="events",
                                      partition=0, offset=0, now_ms=1))
    return orjson.dumps({**fields, **changes})


@pytest.mark.parametrize("value, complaint", [
    (b"{", "not JSON"),
    (b"[]", "expected a JSON object"),
    (orjson.dumps({"original": "x"}), "'original_encoding' is missing"),
    (good_letter(source_offset="3"), "'source_offset' must be int or null"),
    (good_letter(truncated=0), "'truncated' must be bool"),
    (good_letter(original_encoding="base64", original="***"), "not valid base64"),
    (good_letter(original_encoding="latin-1"), "unknown original_encoding"),
])
def test_malformed_dead_letters_are_refused(value, complaint):
    with pytest.raises(MessageError, match=complaint):
        parse_dead_letter(value)


# --- recommendations ----------------------------------------------------------------------------

def recommendation(**changes) -> bytes:
    fields = dict(user_id="u1", session_id="s1", event_id="e9", query_item_id="i1",
                  items=[("i2", 0.75), ("i3", 0.5)], strategy="personalized",
                  model_version="v3", generated_at=1000)
    return recommendation_message(**{**fields, **changes})


def test_a_recommendation_has_exactly_the_contract_fields():
    fields = orjson.loads(recommendation())
    assert set(fields) == RECOMMENDATION_FIELDS
    assert fields["items"] == [{"item_id": "i2", "score": 0.75}, {"item_id": "i3", "score": 0.5}]


def test_a_recommendation_round_trips():
    parsed = parse_recommendation(recommendation())
    assert parsed == {"user_id": "u1", "session_id": "s1", "event_id": "e9",
                      "query_item_id": "i1",
                      "items": [{"item_id": "i2", "score": 0.75},
                                {"item_id": "i3", "score": 0.5}],
                      "strategy": "personalized", "model_version": "v3", "generated_at": 1000}
    assert recommendation_message(**parsed) == recommendation()


def test_numpy_scores_and_ids_become_plain_json():
    ids = np.array(["i2", "i3"])
    scores = np.array([0.5, 0.25], dtype=np.float32)
    parsed = parse_recommendation(recommendation(items=zip(ids, scores)))
    assert parsed["items"] == [{"item_id": "i2", "score": 0.5}, {"item_id": "i3", "score": 0.25}]


def test_no_model_and_no_items_are_allowed():
    parsed = parse_recommendation(recommendation(items=[], model_version=None,
                                                 strategy="popular"))
    assert (parsed["items"], parsed["model_version"]) == ([], None)


@pytest.mark.parametrize("items, complaint", [
    ([("i2", float("nan"))], "score of item 'i2' is nan"),
    ([("i2", float("inf"))], "score of item 'i2' is inf"),
    ([(2, 0.5)], "item_id 2 is not a string"),
])
def test_bad_lists_are_refused_at_the_writer(items, complaint):
    with pytest.raises(MessageError, match=complaint):
        recommendation(items=items)


@pytest.mark.parametrize("changes, complaint", [
    ({"items": [{"item_id": "i2"}]}, "'score' is missing"),
    ({"items": [{"item_id": 5, "score": 1.0}]}, "'item_id' must be str"),
    ({"items": "i2"}, "'items' must be list"),
    ({"generated_at": "2024-01-01"}, "'generated_at' must be int"),
    ({"user_id": None}, "'user_id' must be str"),
])
def test_malformed_recommendations_are_refused(changes, complaint):
    fields = {**orjson.loads(recommendation()), **changes}
    with pytest.raises(MessageError, match=complaint):
        parse_recommendation(orjson.dumps(fields))


def test_unknown_fields_are_dropped_by_readers():
    fields = {**orjson.loads(recommendation()), "debug": [1, 2]}
    assert set(parse_recommendation(orjson.dumps(fields))) == RECOMMENDATION_FIELDS


# --- model updates ------------------------------------------------------------------------------

def test_a_model_update_round_trips():
    value = model_update_message("20240101-0001", "/var/models/20240101-0001", 1704067200000)
    assert parse_model_update(value) == {"version": "20240101-0001",
                                         "path": "/var/models/20240101-0001",
                                         "created_at": 1704067200000}


@pytest.mark.parametrize("fields, complaint", [
    ({"version": "v1", "path": "/m/v1"}, "'created_at' is missing"),
    ({"version": 1, "path": "/m/v1", "created_at": 5}, "'version' must be str"),
    ({"version": "v1", "path": "/m/v1", "created_at": 5.5}, "'created_at' must be int"),
])
def test_malformed_model_updates_are_refused(fields, complaint):
    with pytest.raises(MessageError, match=complaint):
        parse_model_update(orjson.dumps(fields))
