"""``recsys tail`` against the real broker: topics of this module's own, filled with messages
built by the project's own codecs, read back in-process and as the ``recsys`` command."""
from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from batch.produce import producer_config
from recsys import cli, tail
from shared.config import load_settings
from shared.events import Event, EventError
from shared.messages import dead_letter, epoch_ms_now, recommendation_message
from shared.topics import TopicSpec, ensure_topics

ROOT = Path(__file__).resolve().parents[2]
#: Recommendations of three users; u1's list is longer than the lines show.
RECS = [("u1", "i42", [(f"i{n}", 1 - n / 10) for n in range(1, 8)]),
        ("u2", "i5", [("i9", 0.5)]),
        ("u3", "i6", [])]
#: Events: one value that is not JSON first, then more valid events than the default shows.
N_EVENTS = 12
BAD_EVENT = b"not json \x1b[2J"
SUBPROCESS_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def topics(kafka_bootstrap):
    """Topic names of this module, created and filled once: name -> the values sent."""
    suffix = uuid.uuid4().hex[:8]
    names = {"recommendations": f"tail-recs-{suffix}", "dlq": f"tail-dlq-{suffix}",
             "events": f"tail-events-{suffix}"}
    ensure_topics(kafka_bootstrap, [TopicSpec(names["recommendations"], 2, {}),
                                    TopicSpec(names["dlq"], 1, {}),
                                    TopicSpec(names["events"], 1, {})])
    producer = Producer(producer_config(kafka_bootstrap))
    now = epoch_ms_now()
    sent: dict[str, list[tuple[bytes, bytes]]] = {name: [] for name in names}
    for user, trigger, items in RECS:
        value = recommendation_message(
            user_id=user, session_id=f"s-{user}", event_id=f"e-{user}", query_item_id=trigger,
            items=items, strategy="personalized", model_version="20261201T000000Z",
            generated_at=now)
        sent["recommendations"].append((user.encode(), value))
    sent["dlq"] += [
        (b"u1", dead_letter(b'{"event_id": "x1", "user_id": "u1"', EventError(
            "not_json", "unexpected end of data"), topic="events", partition=3, offset=42)),
        (b"u9", dead_letter(b'{"event_id": "x2", "user_id": "u9", "ts": "soon"}', EventError(
            "bad_timestamp", "'ts' is not a time"), topic="events", partition=0, offset=7))]
    sent["events"].append((b"u1", BAD_EVENT))
    for n in range(N_EVENTS):
        user = f"u{n % 3}"
        event = Event(f"ev{n}", user, f"s{n % 3}", f"i{n}", "view", 0, now - 1000 + n,
                      dwell_ms=500)
        sent["events"].append((user.encode(), event.to_json_bytes()))
    for kind, messages in sent.items():
        for key, value in messages:
            producer.produce(names[kind], value, key)
    assert producer.flush(30) == 0
    return names, sent


@pytest.fixture
def settings(kafka_bootstrap, topics, monkeypatch):
    """Settings naming this module's topics; ``ensure_broker`` uses the test broker."""
    names, _ = topics
    environ = {"KAFKA_BOOTSTRAP": kafka_bootstrap,
               "RECSYS_RECOMMENDATIONS_TOPIC": names["recommendations"],
               "RECSYS_DLQ_TOPIC": names["dlq"], "RECSYS_EVENTS_TOPIC": names["events"]}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return load_settings(environ)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tail.add_arguments(parser)
    return parser.parse_args(argv)


def _tail(capsys, settings, *argv: str) -> list[str]:
    assert tail.run(_args(*argv), settings) == 0
    return capsys.readouterr().out.splitlines()


def _command_env(settings) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "RECSYS_RECOMMENDATIONS_TOPIC": settings.recommendations_topic,
            "RECSYS_DLQ_TOPIC": settings.dlq_topic, "RECSYS_EVENTS_TOPIC": settings.events_topic}


def test_recommendation_lines_name_user_trigger_items_strategy_and_model(capsys, settings):
    lines = _tail(capsys, settings, "recommendations")
    assert len(lines) == len(RECS)
    by_user = {line.split("  ")[1]: line for line in lines}
    assert set(by_user) == {"user u1", "user u2", "user u3"}
    first = by_user["user u1"]
    assert "  after i42  [personalized] model 20261201T000000Z  " in first
    assert "i1 0.9, i2 0.8, i3 0.7, i4 0.6, i5 0.5 +2 more" in first
    assert "i6" not in first.split("after i42")[1]
    assert "(age " in first
    assert "i9 0.5" in by_user["user u2"] and "no items" in by_user["user u3"]


def test_user_filters_by_key_or_user_id(capsys, settings):
    lines = _tail(capsys, settings, "recommendations", "--user", "u2")
    assert len(lines) == 1 and "user u2  after i5" in lines[0]
    events = _tail(capsys, settings, "events", "--from-beginning", "--user", "u1")
    assert len(events) == 1 + N_EVENTS // 3  # the bad value is keyed u1 too
    assert all("user u1" in line for line in events[1:])
    letters = _tail(capsys, settings, "dlq", "--user", "u9")
    assert len(letters) == 1 and "bad_timestamp" in letters[0]
    assert _tail(capsys, settings, "recommendations", "--user", "nobody") == []


def test_json_prints_the_values_exactly(capsys, settings, topics):
    _, sent = topics
    for kind in ("recommendations", "dlq", "events"):
        lines = _tail(capsys, settings, kind, "--json", "--from-beginning")
        assert sorted(lines) == sorted(value.decode() for _, value in sent[kind]), kind


def test_dead_letter_lines_give_reason_source_key_and_original(capsys, settings):
    lines = _tail(capsys, settings, "dlq")
    assert lines[0].split("  ")[1:] == [
        "not_json: unexpected end of data", "from events[3]@42", "key u1",
        'original {"event_id": "x1", "user_id": "u1" (34 bytes)']
    assert "bad_timestamp: 'ts' is not a time  from events[0]@7  key u9" in lines[1]


def test_default_shows_the_last_messages_and_from_beginning_all(capsys, settings):
    last = _tail(capsys, settings, "events")
    assert len(last) == tail.LAST_PER_PARTITION
    assert [line.split("  ")[1] for line in last] == [
        f"event ev{n}" for n in range(N_EVENTS - tail.LAST_PER_PARTITION, N_EVENTS)]
    assert "  item i11  view  ts " in last[-1] and last[-1].endswith("dwell 500 ms")
    every = _tail(capsys, settings, "events", "--from-beginning")
    assert len(every) == 1 + N_EVENTS
    assert "not a valid event (not_json: " in every[0]
    assert every[0].endswith(r": not json \x1b[2J")  # the escape is shown, not sent


def test_max_stops_after_n_messages(capsys, settings):
    assert len(_tail(capsys, settings, "events", "--from-beginning", "--max", "3")) == 3
    assert len(_tail(capsys, settings, "events", "--follow", "--max", "2")) == 2


def test_a_topic_that_does_not_exist_is_one_line(capsys, settings, monkeypatch):
    missing = f"tail-missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("RECSYS_EVENTS_TOPIC", missing)
    assert tail.run(_args("events"), load_settings()) == 1
    assert capsys.readouterr().err.strip() == (
        f"recsys tail: topic {missing!r} does not exist on {settings.kafka_bootstrap} "
        "(`recsys topics` creates the project's topics)")


def test_a_broker_that_does_not_answer_is_one_line(capsys, monkeypatch, free_port):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", address)
    started = time.monotonic()
    assert cli.main(["tail", "events"]) == 2
    assert time.monotonic() - started < tail.CONNECT_TIMEOUT_S + 5
    err = capsys.readouterr().err
    assert err.startswith(f"recsys tail: no Kafka broker answers at {address}: ")
    assert err.count("\n") == 1


def test_the_command_exits_by_itself_at_the_end(settings):
    result = subprocess.run([sys.executable, "-m", "recsys", "tail", "recommendations"],
                            cwd=ROOT, env=_command_env(settings), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(RECS)


def test_follow_prints_new_messages_and_stops_cleanly_on_sigint(settings):
    # SIGINT at its default in the command, as in a terminal: a suite started in the
    # background by a shell without job control inherits SIGINT ignored, and so would it.
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys", "tail", "recommendations", "--follow"], cwd=ROOT,
        env=_command_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    errors: list[str] = []  # read as it comes, so that a full stderr pipe cannot block it
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()
    try:
        seen = [lines.get(timeout=SUBPROCESS_TIMEOUT_S) for _ in RECS]
        assert {line.split("  ")[1] for line in seen} == {"user u1", "user u2", "user u3"}
        user = f"u-live-{uuid.uuid4().hex[:6]}"
        producer = Producer(producer_config(settings.kafka_bootstrap))
        producer.produce(settings.recommendations_topic, recommendation_message(
            user_id=user, session_id="s", event_id="e", query_item_id="i1",
            items=[("i2", 0.25)], strategy="popular", model_version=None), user.encode())
        assert producer.flush(30) == 0
        live = lines.get(timeout=SUBPROCESS_TIMEOUT_S)
        assert f"user {user}  after i1  [popular] model none  i2 0.25" in live
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=2 * SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"recsys tail did not exit within {2 * SUBPROCESS_TIMEOUT_S} s of "
                        f"SIGINT; its stderr: {''.join(errors)[-3000:]!r}")
        assert status == 0
        time.sleep(0.2)  # the reader thread takes the last of stderr
        assert "Traceback" not in "".join(errors)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
