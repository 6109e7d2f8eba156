"""``recsys produce``: pacing, the synthetic source and the command line on their own, then
every valid event delivered once and in order per user through the real broker, bad rows
named by line, field and reason, and ``--strict`` sending nothing from a file with one."""
from __future__ import annotations

import argparse
import io
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from batch.produce import (MAX_ERRORS_KEPT, Pace, ProduceSummary, ProgressLine, add_arguments,
                           describe, produce_events, producer_config, run, synthetic_events)
from batch.formats import BadRow
from batch.readers import ReadReport, iter_events
from batch.synthetic import ShopParams
from batch.synthetic_file import write_jsonl
from batch.validate import MAX_BAD_ROWS_SHOWN
from shared.config import load_settings
from shared.events import Event, parse_event
from shared.topics import TopicSpec, ensure_topics

PARTITIONS = 4
PARAMS = ShopParams(n_items=200, n_categories=10)
BAD_ROWS = {  # line index in the file -> (row, reason code)
    0: (b'{"event_id": "bad-0", "type": "view"', "not_json"),
    500: (b'{"event_id": "bad-1", "session_id": "s1", "type": "view", "ts": 5}',
          "missing_field"),
    1700: (b'{"event_id": "bad-2", "session_id": "s1", "item_id": "i1", "type": "view",'
           b' "ts": "2024-01-01T00:00:00"}', "bad_timestamp"),
}
RETAILROCKET = b"\n".join([
    b"timestamp,visitorid,event,itemid,transactionid",
    b"1433221332117,257597,view,355908,",
    b"1433224214164,992329,view,248676,",
    b"1433221999827,257597,addtocart,355908,",
    b"1433222276276,257597,wishlist,355908,",           # unknown_type
    b"1433223236124,992329,transaction,248676,4000",
    b"1433221955914,,view,111016,",                     # empty_field
    b"1433221955915,121688,view,111016",                # bad_columns
    b"1433221955916,121688,view,111016,",
]) + b"\n"


def _command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


# --- without a broker -----------------------------------------------------------------

def test_rate_spaces_events_evenly_from_the_first():
    pace = Pace(rate=400)
    assert [pace.due_s(i, ts_ms=0, first_ts_ms=0) for i in (0, 1, 200)] == [0.0, 0.0025, 0.5]


def test_speedup_follows_event_time_and_sends_older_events_at_once():
    pace = Pace(speedup=10)
    assert pace.due_s(5, ts_ms=61_000, first_ts_ms=1_000) == 6.0
    assert pace.due_s(6, ts_ms=0, first_ts_ms=1_000) < 0


@pytest.mark.parametrize("kwargs", [{}, {"rate": 1, "speedup": 1}, {"rate": 0}, {"speedup": -2},
                                    {"rate": float("nan")}])
def test_pace_needs_exactly_one_positive_setting(kwargs):
    with pytest.raises(ValueError):
        Pace(**kwargs)


def test_synthetic_events_are_those_of_the_written_file(tmp_path):
    path = tmp_path / "events.jsonl"
    write_jsonl(path, 2_500, seed=9, params=PARAMS, chunk_events=1_000)
    drawn = list(synthetic_events(2_500, seed=9, params=PARAMS, chunk_events=1_000))
    assert drawn == list(iter_events(path))
    assert len({event.user_id for event in drawn}) > 20


def test_synthetic_events_check_their_arguments_at_once():
    with pytest.raises(ValueError):
        synthetic_events(-1, seed=0)


def test_undeliverable_events_are_counted_and_reported(free_port):
    """No broker listens: every message times out and says so; none is silently dropped."""
    producer = Producer(producer_config(f"127.0.0.1:{free_port()}", **{
        "message.timeout.ms": 300, "log_level": 0}))
    events = [Event(f"e{k}", "u1", "s1", "i1", "view", 0, 1_000 + k) for k in range(20)]
    summary = produce_events(producer, "events", events)
    assert (summary.sent, summary.delivered, summary.failed, summary.ok) == (20, 0, 20, False)
    assert len(summary.errors) == MAX_ERRORS_KEPT
    assert all("timed out" in error for error in summary.errors)


def test_summary_lines_name_skipped_rows_and_errors():
    summary = ProduceSummary(sent=10, delivered=9, failed=1, elapsed_s=2.0,
                             errors=("events key=b'u1': Local: Message timed out",),
                             skipped={"not_json": 2, "bad_dwell": 1})
    assert describe(summary, "events") == [
        "events: sent 10, delivered 9, failed 1 in 2.0 s (5 events/s)",
        "skipped rows: bad_dwell 1, not_json 2",
        "delivery failed: events key=b'u1': Local: Message timed out",
    ]
    assert not summary.ok


def test_progress_line_rewrites_itself_and_ends_once():
    stream = io.StringIO()
    progress = ProgressLine(stream)
    progress(1_000, 0.5)
    progress(3_000, 1.0)
    progress.finish()
    assert stream.getvalue().count("\r") == 2
    assert "3,000 events sent  3,000 events/s" in stream.getvalue()
    assert stream.getvalue().endswith("\n")


def test_command_line_takes_a_file_or_a_synthetic_shop():
    assert _command("events.jsonl", "--rate", "50").rate == 50.0
    assert _command("--synthetic", "100", "--speedup", "60").speedup == 60.0
    assert (_command("events.jsonl").strict, _command("events.jsonl", "--strict").strict) == (
        False, True)


def test_summary_names_the_first_bad_rows_and_counts_the_rest():
    rows = tuple(BadRow(Path("e.jsonl"), n, "not_json", None, "bad") for n in range(1, 21))
    summary = ProduceSummary(sent=5, delivered=5, failed=0, elapsed_s=1.0,
                             skipped={"not_json": 25}, bad_rows=rows)
    lines = describe(summary, "events")
    assert lines[1:3] == ["skipped rows: not_json 25", "e.jsonl:1: (row): bad (not_json)"]
    assert lines[21:] == ["e.jsonl:20: (row): bad (not_json)", "... and 5 more"]


def test_strict_refuses_a_file_with_a_bad_row_before_any_broker_is_asked(tmp_path, capsys,
                                                                         free_port):
    """Nothing listens at the bootstrap address: a strict replay that tried to send would
    fail there; it stops before, with the report and one line on standard error."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([_valid_line(0), b'{"event_id": 1', _valid_line(1)]) + b"\n")
    settings = load_settings({"KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert run(_command(str(path), "--strict"), settings) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{path}:2: (row): unexpected end of data: line 1 column 15 (char 14) (not_json)",
        "3 rows, 2 valid, 1 bad"]
    assert err.splitlines() == [f"recsys produce: 1 bad rows in {path}; nothing sent (--strict)"]


def _valid_line(n: int) -> bytes:
    return Event(f"e{n}", "u1", "s1", "i1", "view", 0, 1_700_000_000_000 + n).to_json_bytes()


@pytest.mark.parametrize("argv", [
    (), ("events.jsonl", "--synthetic", "10"), ("events.jsonl", "--rate", "5", "--speedup", "2"),
    ("events.jsonl", "--rate", "0"), ("events.jsonl", "--format", "csv"),
])
def test_command_line_refuses_ambiguous_or_bad_options(argv, capsys):
    with pytest.raises(SystemExit):
        _command(*argv)


# --- through the broker -----------------------------------------------------------------

@pytest.fixture
def topic(kafka_bootstrap, topic_name):
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, PARTITIONS, {})])
    return topic_name


@pytest.fixture
def settings(kafka_bootstrap, monkeypatch):
    """Settings of a command run against the test broker, with the test topics' partitions."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    return load_settings(events_partitions=PARTITIONS)


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    """A synthetic shop's JSON lines with bad rows among them."""
    path = tmp_path_factory.mktemp("produce") / "events.jsonl"
    write_jsonl(path, 3_000, seed=4, params=PARAMS, chunk_events=1_000)
    lines = path.read_bytes().splitlines()
    for at, (row, _) in sorted(BAD_ROWS.items()):
        lines.insert(at, row)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _consume(bootstrap: str, topic: str, expected: int) -> list:
    """Every message of ``topic`` once ``expected`` have come, plus any that follow within 1 s."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages = []
    try:
        deadline = time.monotonic() + 60
        while len(messages) < expected and time.monotonic() < deadline:
            messages += consumer.consume(1000, timeout=0.5)
        messages += consumer.consume(1000, timeout=1.0)
    finally:
        consumer.close()
    assert all(message.error() is None for message in messages)
    return messages


def _assert_replayed(messages: list, expected: list[Event]) -> None:
    """Each expected event exactly once, keyed by user id, in file order per user and partition."""
    counts = Counter(parse_event(message.value()).event_id for message in messages)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    assert set(counts) == {event.event_id for event in expected}
    by_id = {event.event_id: event for event in expected}
    sent_order, partitions = defaultdict(list), defaultdict(set)
    for message in messages:
        event = parse_event(message.value())
        assert message.value() == by_id[event.event_id].to_json_bytes()
        assert message.key() == event.user_id.encode()
        sent_order[event.user_id].append(event.event_id)
        partitions[event.user_id].add(message.partition())
    file_order = defaultdict(list)
    for event in expected:
        file_order[event.user_id].append(event.event_id)
    assert sent_order == file_order
    assert all(len(found) == 1 for found in partitions.values())


def test_replay_of_a_file_delivers_each_valid_event_once_in_order_per_user(
        kafka_bootstrap, topic, settings, event_file, capsys):
    assert run(_command(str(event_file), "--topic", topic), settings) == 0

    expected = list(iter_events(event_file))
    assert len(expected) == 3_000
    assert len({event.user_id for event in expected}) > 50
    _assert_replayed(_consume(kafka_bootstrap, topic, len(expected)), expected)
    summary = capsys.readouterr().out
    assert "sent 3,000, delivered 3,000, failed 0" in summary
    assert "skipped rows: bad_timestamp 1, missing_field 1, not_json 1" in summary
    assert summary.splitlines()[2:] == [
        f"{event_file}:1: (row): unexpected end of data: line 1 column 37 (char 36) (not_json)",
        f"{event_file}:501: item_id: 'item_id' is required (missing_field)",
        f"{event_file}:1701: ts: 'ts' '2024-01-01T00:00:00' has no zone; add 'Z' or an offset"
        " (bad_timestamp)"]


def test_replay_of_a_data_set_counts_bad_rows_by_code(kafka_bootstrap, topic, settings,
                                                      tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_bytes(RETAILROCKET)
    assert run(_command(str(path), "--topic", topic), settings) == 0

    expected = list(iter_events(path))
    assert [event.type for event in expected] == ["view", "view", "add_to_cart", "buy", "view"]
    _assert_replayed(_consume(kafka_bootstrap, topic, len(expected)), expected)
    assert "skipped rows: bad_columns 1, empty_field 1, unknown_type 1" in capsys.readouterr().out


def _end_offsets(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)]
    finally:
        consumer.close()


def test_many_bad_rows_are_named_up_to_the_cap_and_the_good_rows_still_sent(
        kafka_bootstrap, topic, settings, tmp_path, capsys):
    lines = [_valid_line(n) if n % 2 else b'{"event_id": "x%d", "ts": 5}' % n for n in range(60)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert run(_command(str(path), "--topic", topic), settings) == 0

    _assert_replayed(_consume(kafka_bootstrap, topic, 30), list(iter_events(path)))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{topic}: sent 30, delivered 30, failed 0 in ")
    assert out[1] == "skipped rows: missing_field 30"
    assert out[2:2 + MAX_BAD_ROWS_SHOWN] == [
        f"{path}:{n}: session_id: 'session_id' is required (missing_field)"
        for n in range(1, 2 * MAX_BAD_ROWS_SHOWN, 2)]
    assert out[2 + MAX_BAD_ROWS_SHOWN:] == ["... and 10 more"]


def test_strict_sends_nothing_from_a_file_with_a_bad_row(kafka_bootstrap, topic, settings,
                                                          event_file, capsys):
    assert run(_command(str(event_file), "--strict", "--topic", topic), settings) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "3,003 rows, 3,000 valid, 3 bad"
    assert len(out.splitlines()) == 4 and f"{event_file}:501: item_id: " in out
    assert "nothing sent (--strict)" in err
    assert _end_offsets(kafka_bootstrap, topic) == [0] * PARTITIONS


def test_strict_sends_a_clean_file_whole(kafka_bootstrap, topic, settings, tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    write_jsonl(path, 400, seed=6, params=PARAMS)
    assert run(_command(str(path), "--strict", "--topic", topic), settings) == 0

    _assert_replayed(_consume(kafka_bootstrap, topic, 400), list(iter_events(path)))
    out = capsys.readouterr().out
    assert "sent 400, delivered 400, failed 0" in out and "skipped" not in out


def test_replay_of_a_synthetic_shop(kafka_bootstrap, topic, settings, capsys):
    assert run(_command("--synthetic", "500", "--seed", "2", "--topic", topic), settings) == 0

    messages = _consume(kafka_bootstrap, topic, 500)
    assert sorted(parse_event(m.value()).event_id for m in messages) == sorted(
        f"e2-{i}" for i in range(500))
    assert "sent 500, delivered 500, failed 0" in capsys.readouterr().out


def test_produce_events_reports_what_the_reader_skipped(kafka_bootstrap, topic, event_file):
    report = ReadReport()
    summary = produce_events(kafka_bootstrap, topic, iter_events(event_file, report=report))
    assert (summary.sent, summary.delivered, summary.failed, summary.ok) == (3_000, 3_000, 0, True)
    assert report.rows_bad == Counter(code for _, code in BAD_ROWS.values())


def test_rate_is_not_exceeded(kafka_bootstrap, topic, event_file):
    events = list(iter_events(event_file))[:200]
    started = time.monotonic()
    summary = produce_events(kafka_bootstrap, topic, events, rate=400)
    assert time.monotonic() - started >= 199 / 400
    assert summary.elapsed_s >= 199 / 400
    assert summary.ok and summary.delivered == 200


def test_speedup_follows_event_times(kafka_bootstrap, topic):
    events = [Event(f"e{k}", f"u{k % 3}", "s", "i", "view", 0, 1_700_000_000_000 + 100 * k)
              for k in range(11)]  # one second of event time
    summary = produce_events(kafka_bootstrap, topic, events, speedup=2.0)
    assert summary.elapsed_s >= 0.5
    assert summary.ok
    _assert_replayed(_consume(kafka_bootstrap, topic, 11), events)
