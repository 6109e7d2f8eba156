"""``recsys tail`` without a broker: the lines it prints, the ``--user`` test, its options.

(The file is not named ``test_tail.py``: test folders have no ``__init__.py``, so two test
modules of one name, here and in tests/integration, would clash on import.)
"""
from __future__ import annotations

from datetime import UTC

import pytest

from recsys import cli, tail
from shared.config import load_settings
from shared.events import Event, EventError
from shared.messages import dead_letter, recommendation_message


def _rec(**overrides) -> bytes:
    fields = {"user_id": "u1", "session_id": "s1", "event_id": "e1", "query_item_id": "i0",
              "items": [("i1", 0.5)], "strategy": "personalized", "model_version": "v1",
              "generated_at": 10_000}
    return recommendation_message(**{**fields, **overrides})


def _line(formatter, value, key=None, *, timestamp_ms=0, now_ms=10_000) -> str:
    return formatter(key, value, timestamp_ms=timestamp_ms, now_ms=now_ms, tz=UTC)


def test_recommendation_shows_five_items_then_counts_the_rest():
    value = _rec(items=[(f"i{n}", n / 100) for n in range(12)])
    line = _line(tail.format_recommendation, value)
    assert "i0 0, i1 0.01, i2 0.02, i3 0.03, i4 0.04 +7 more" in line
    assert "i5" not in line


@pytest.mark.parametrize("n_items", [0, 1, tail.ITEMS_SHOWN])
def test_recommendation_without_hidden_items_says_no_more(n_items):
    line = _line(tail.format_recommendation, _rec(items=[(f"i{n}", 1.0) for n in range(n_items)]))
    assert "more" not in line
    assert ("no items" in line) == (n_items == 0)


def test_recommendation_age_counts_from_generated_at():
    line = _line(tail.format_recommendation, _rec(generated_at=10_000), now_ms=10_000 + 125_000)
    assert line.startswith("00:00:10  user u1  after i0  [personalized] model v1  ")
    assert line.endswith("(age 2.1 min)")


def test_control_characters_of_a_value_never_reach_the_terminal():
    line = _line(tail.format_recommendation, _rec(user_id="u\x1b[2J\n", strategy="s\r"))
    assert "\x1b" not in line and "\n" not in line and "\r" not in line
    assert "user u\\x1b[2J\\n" in line and "[s\\r]" in line


def test_a_value_that_is_not_a_recommendation_shows_the_kafka_time_and_the_reason():
    line = _line(tail.format_recommendation, b'{"user_id": "u1"}', timestamp_ms=3_600_000)
    assert line.startswith("01:00:00  not a recommendation (recommendation: ")
    assert line.endswith('is missing): {"user_id": "u1"}')


def test_dead_letter_of_bytes_that_are_not_utf8_shows_them_escaped():
    value = dead_letter(b"\xff\xfe{", EventError("not_utf8", "invalid UTF-8 at byte 0"),
                        topic="events", partition=None, offset=None, now_ms=0)
    line = _line(tail.format_dead_letter, value)
    assert line == ("00:00:00  not_utf8: invalid UTF-8 at byte 0  from events  key (none)  "
                    "original \\xff\\xfe{ (3 bytes)")


def test_dead_letter_of_a_long_event_is_cut_and_says_so():
    value = dead_letter(b"x" * 1000, EventError("oversized", "1000 bytes"), topic="events",
                        partition=1, offset=2, now_ms=0, max_original_bytes=500)
    line = _line(tail.format_dead_letter, value, key=b"u1")
    assert line.endswith("original " + "x" * tail.RAW_SHOWN + "... (1,000 bytes, 500 kept)")
    assert "x" * (tail.RAW_SHOWN + 1) not in line


def test_event_with_every_field():
    value = Event("e1", "u1", "s1", "i1", "buy", 3, 1_700_000_001_000, category="c/1", price=9.5,
                  quantity=2).to_json_bytes()
    assert _line(tail.format_event, value, timestamp_ms=None, now_ms=1_700_000_001_000) == (
        "--:--:--  event e1  user u1  session s1  item i1  buy  ts 2023-11-14T22:13:21.000Z"
        "  category c/1  price 9.5  quantity 2")


def test_anonymous_event_shows_its_session_as_the_user():
    value = b'{"event_id":"e1","session_id":"s7","item_id":"i1","type":"click","ts":1700000000000}'
    assert "  event e1  user s7  session s7  " in _line(tail.format_event, value,
                                                         now_ms=1_700_000_000_000)


def test_event_limits_are_those_given():
    value = Event("e1", "u1", "s1", "i1", "view", 0, 1_700_000_001_000,
                  dwell_ms=5_000).to_json_bytes()
    limits = load_settings({"RECSYS_MAX_DWELL_MS": "1000"}).event_limits()
    line = tail.format_event(None, value, timestamp_ms=0, now_ms=1_700_000_001_000, tz=UTC,
                             limits=limits)
    assert "not a valid event (bad_dwell: " in line


@pytest.mark.parametrize("formatter", [tail.format_recommendation, tail.format_dead_letter,
                                       tail.format_event])
def test_a_message_without_a_value_is_a_line_too(formatter):
    assert _line(formatter, None).endswith("): (no value)")


def test_json_is_the_value_as_it_is():
    value = _rec()
    assert tail.format_json(b"u1", value, timestamp_ms=0, now_ms=0) == value.decode()
    assert tail.format_json(None, b"\xffnot json") == "\\xffnot json"
    assert tail.format_json(None, b"not\njson") == "not\njson"


@pytest.mark.parametrize(("topic", "key", "value", "user", "expected"), [
    ("recommendations", b"u1", b"", "u1", True),
    ("recommendations", None, _rec(user_id="u2"), "u2", True),
    ("recommendations", b"u1", _rec(user_id="u1"), "u2", False),
    ("events", None, b'{"user_id": 42}', "42", True),
    ("events", None, b'{"user_id": true}', "True", False),
    ("events", None, b"[1, 2]", "1", False),
    ("events", None, None, "u1", False),
    ("dlq", None, dead_letter(b'{"user_id": "u3"}', EventError("x", "y"), topic="events",
                              partition=0, offset=0), "u3", True),
    ("dlq", None, dead_letter(b"\xff", EventError("x", "y"), topic="events", partition=0,
                              offset=0), "u3", False),
    ("dlq", None, b'{"user_id": "u3"}', "u3", False),  # a dead letter's own fields are not it
])
def test_user_matches_the_key_or_the_user_id_of_the_value(topic, key, value, user, expected):
    assert tail.user_matches(topic, key, value, user) is expected


def test_topic_names_come_from_the_settings():
    settings = load_settings({"RECSYS_RECOMMENDATIONS_TOPIC": "r", "RECSYS_DLQ_TOPIC": "d",
                              "RECSYS_EVENTS_TOPIC": "e"})
    assert [tail.topic_name(name, settings) for name in tail.TOPICS] == ["r", "d", "e"]


@pytest.mark.parametrize("argv", [["tail", "model-updates"], ["tail"],
                                  ["tail", "events", "--max", "0"],
                                  ["tail", "events", "--max", "x"]])
def test_bad_arguments_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "recsys tail: error: " in capsys.readouterr().err


def test_the_command_is_registered_with_its_options():
    args = cli.build_parser().parse_args(["tail", "dlq", "--user", "u1", "--from-beginning",
                                          "-f", "--json", "--max", "3"])
    assert (args.topic, args.user, args.from_beginning, args.follow, args.json, args.max) == (
        "dlq", "u1", True, True, True, 3)



def test_help_says_what_the_default_reads(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tail", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"the last {tail.LAST_PER_PARTITION} messages of each partition" in help_text
    assert "exits once every partition is read up to the end it had at the start" in help_text
