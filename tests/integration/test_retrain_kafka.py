"""Retrain from the real ``events`` topic: the same model as from a file, announcements on
``model-updates`` that point at loadable versions, announcements only for the live store
(``RECSYS_MODEL_DIR``), and the periodic mode."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from batch.event_log import read_topic
from batch.readers import iter_events
from batch.publish import last_announced
from batch.retrain import MODEL_UPDATE_KEY, RUN_ERRORS, RetrainJob, add_arguments, run
from batch.schedule import Every, run_periodically
from batch.synthetic import ShopParams
from batch.synthetic_file import write_jsonl
from batch.training import TrainingParams
from shared.config import ConfigError, load_settings
from shared.events import Event
from shared.messages import parse_model_update
from shared.model import Model
from shared.model_store import load_model, versions
from shared.topics import TopicSpec, ensure_topics

PARTITIONS = 4
SHOP = ShopParams(n_items=200, n_categories=10)
TRAIN = dataclasses.replace(
    TrainingParams.from_settings(load_settings({}, als_factors=8, als_iterations=5, similar_k=5,
                                               als_regularization=0.05)),
    random_state=7, num_threads=1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(tmp_path) -> Path:
    """5,000 events of a small synthetic shop, as a JSON-lines file."""
    path = tmp_path / "events.jsonl"
    write_jsonl(path, 5_000, seed=5, params=SHOP, chunk_events=1_000)
    return path


@pytest.fixture
def topics(kafka_bootstrap, topic_name) -> tuple[str, str]:
    """A fresh events topic of 4 partitions and a fresh compacted model-updates topic."""
    events, updates = f"{topic_name}-events", f"{topic_name}-updates"
    ensure_topics(kafka_bootstrap, [TopicSpec(events, PARTITIONS, {}),
                                    TopicSpec(updates, 1, {"cleanup.policy": "compact"})])
    return events, updates


def produce(bootstrap: str, topic: str, events: list[Event], raw: list[bytes] = ()) -> None:
    """Each event keyed by its user id, then the ``raw`` values; all delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for event in events:
        producer.produce(topic, key=event.user_id.encode(), value=event.to_json_bytes())
    for value in raw:
        producer.produce(topic, key=b"bad", value=value)
    assert producer.flush(30) == 0


def announcements(bootstrap: str, topic: str, n: int, timeout_s: float = 20.0) -> list:
    """The first ``n`` messages on ``topic``, waiting for them up to ``timeout_s``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    received, deadline = [], time.monotonic() + timeout_s
    try:
        while len(received) < n and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None
                received.append(message)
    finally:
        consumer.close()
    assert len(received) == n, f"{len(received)} of {n} announcements within {timeout_s} s"
    return received


def loaded_announcement(message) -> Model:
    """The version a model-updates message points at, checked against the message."""
    assert message.key() == MODEL_UPDATE_KEY
    update = parse_model_update(message.value())
    assert Path(update["path"]).is_absolute()
    model = load_model(update["path"])
    assert model.version == update["version"]
    return model


def by_item(model: Model, name: str) -> dict:
    """Row ``name`` of every item, keyed by item id; neighbour indices become ids."""
    rows = getattr(model, name)
    if name.endswith("_items"):
        rows = np.where(rows >= 0, model.item_ids[rows], "")
    return dict(zip(model.item_ids.tolist(), rows))


def test_a_model_from_the_topic_equals_one_from_the_same_events_in_a_file(
        kafka_bootstrap, topics, shop, tmp_path):
    events_topic, _ = topics
    produce(kafka_bootstrap, events_topic, list(iter_events(shop)),
            raw=[b"{not json", b'{"event_id": "e", "type": "view"}'])

    from_topic, _ = RetrainJob(tmp_path / "topic-store", TRAIN, bootstrap=kafka_bootstrap,
                               events_topic=events_topic, progress=False)()
    from_file, _ = RetrainJob(tmp_path / "file-store", TRAIN, input=str(shop), progress=False)()

    assert sorted(from_topic.item_ids.tolist()) == sorted(from_file.item_ids.tolist())
    topic_factors, file_factors = by_item(from_topic, "item_factors"), by_item(from_file,
                                                                              "item_factors")
    for item_id, factors in file_factors.items():
        np.testing.assert_allclose(topic_factors[item_id], factors, atol=1e-5)
    for name in ("similar_items", "cooc_items", "next_items"):
        topic_rows, file_rows = by_item(from_topic, name), by_item(from_file, name)
        assert all((topic_rows[i] == file_rows[i]).all() for i in file_rows), name
    assert from_topic.meta["counts"] == from_file.meta["counts"]

    source = from_topic.meta["data"]["source"]
    assert source["kind"] == "topic" and source["topic"] == events_topic
    assert source["bootstrap"] == kafka_bootstrap
    assert set(source["end_offsets"]) == {str(p) for p in range(PARTITIONS)}
    assert sum(source["end_offsets"].values()) == 5_002
    assert source["start_offsets"] == {str(p): 0 for p in range(PARTITIONS)}
    assert source["rows_read"] == 5_002
    assert source["rows_bad"] == {"not_json": 1, "missing_field": 1}


def test_the_read_stops_at_the_end_offsets_seen_at_its_start(kafka_bootstrap, topics, shop):
    events_topic, _ = topics
    events = list(iter_events(shop))
    produce(kafka_bootstrap, events_topic, events[:1_000])
    late = threading.Thread(target=produce, args=(kafka_bootstrap, events_topic, events[1_000:]))
    late.start()  # more events arrive while the topic is read
    columns, report, source = read_topic(kafka_bootstrap, events_topic, chunk_events=300,
                                         progress=False)
    late.join()
    assert len(columns) == report.rows_read == sum(source["end_offsets"].values())
    assert 1_000 <= len(columns) <= 5_000


def test_the_command_announces_a_loadable_version_and_refuses_an_empty_topic(
        kafka_bootstrap, topics, shop, tmp_path, monkeypatch, capsys):
    events_topic, updates_topic = topics
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    settings = load_settings({"KAFKA_BOOTSTRAP": kafka_bootstrap}, events_topic=events_topic,
                             model_updates_topic=updates_topic, model_dir=str(tmp_path / "store"),
                             als_factors=4, als_iterations=2, similar_k=3)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])

    assert run(args, settings) == 2
    assert "holds no events" in capsys.readouterr().err
    assert versions(tmp_path / "store") == []

    produce(kafka_bootstrap, events_topic, list(iter_events(shop))[:2_000])
    assert run(args, settings) == 0
    model = loaded_announcement(announcements(kafka_bootstrap, updates_topic, 1)[0])
    assert versions(tmp_path / "store") == [model.version]
    assert model.meta["counts"]["events_read"] == 2_000


def command_settings(bootstrap: str, topics: tuple[str, str], live: Path):
    """Settings of a quick ``recsys retrain`` on ``topics`` whose live store is ``live``."""
    events_topic, updates_topic = topics
    return load_settings({"KAFKA_BOOTSTRAP": bootstrap}, events_topic=events_topic,
                         model_updates_topic=updates_topic, model_dir=str(live), als_factors=4,
                         als_iterations=2, similar_k=3, keep_versions=1)


def command_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_retrain_from_a_file_is_not_announced_and_leaves_the_live_store(
        kafka_bootstrap, topics, shop, tmp_path, monkeypatch, capsys):
    """The live version stays the only one (keep_versions=1) and model-updates stays empty:
    a worker started or restarted later still serves the model of the topic."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    live = tmp_path / "models"
    produce(kafka_bootstrap, topics[0], list(iter_events(shop))[:1_000])
    settings = command_settings(kafka_bootstrap, topics, live)
    assert run(command_args("--no-announce"), settings) == 0
    served = versions(live)

    assert run(command_args("--input", str(shop)), settings) == 0
    assert versions(live) == served
    assert len(versions(tmp_path / "models-events")) == 1
    assert last_announced(kafka_bootstrap, topics[1]) is None
    assert f"writing to {tmp_path / 'models-events'}, not to the live store" in (
        capsys.readouterr().err)

    # Another store named with --store: written, still not announced; --announce is refused.
    assert run(command_args("--store", str(tmp_path / "elsewhere")), settings) == 0
    assert len(versions(tmp_path / "elsewhere")) == 1
    assert run(command_args("--input", str(shop), "--store", str(tmp_path / "elsewhere"),
                            "--announce"), settings) == 2
    assert last_announced(kafka_bootstrap, topics[1]) is None
    assert versions(live) == served


def test_a_retrain_from_a_file_into_the_named_live_store_is_announced(
        kafka_bootstrap, topics, shop, tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    live = tmp_path / "models"
    settings = command_settings(kafka_bootstrap, topics, live)
    assert run(command_args("--input", str(shop), "--store", str(live)), settings) == 0
    message = announcements(kafka_bootstrap, topics[1], 1)[0]
    model = loaded_announcement(message)
    assert versions(live) == [model.version]
    assert Path(parse_model_update(message.value())["path"]) == (live / model.version).resolve()
    assert model.meta["data"]["source"]["kind"] == "file"
    assert not (tmp_path / "models-events").exists()


def test_a_skipped_run_announces_a_version_whose_announcement_went_missing(
        kafka_bootstrap, topics, shop, tmp_path):
    events_topic, updates_topic = topics
    produce(kafka_bootstrap, events_topic, list(iter_events(shop))[:1_000])
    unannounced = RetrainJob(tmp_path / "store", TRAIN, bootstrap=kafka_bootstrap,
                             events_topic=events_topic, progress=False)
    model, _ = unannounced()
    job = dataclasses.replace(unannounced, announce_topic=updates_topic)

    assert job.scheduled().endswith(f"announced it on {updates_topic!r}, where it was missing")
    assert loaded_announcement(announcements(kafka_bootstrap, updates_topic, 1)[0]).version == (
        model.version)
    assert job.scheduled() == (f"skipped: no new events on {events_topic!r}"
                               f" since version {model.version}")
    assert versions(tmp_path / "store") == [model.version]


def test_periodic_mode_skips_when_nothing_is_new_and_publishes_a_newer_version(
        kafka_bootstrap, topics, shop, tmp_path, caplog):
    events_topic, updates_topic = topics
    events = list(iter_events(shop))
    produce(kafka_bootstrap, events_topic, events[:2_000])
    job = RetrainJob(tmp_path / "store", TRAIN, bootstrap=kafka_bootstrap,
                     events_topic=events_topic, announce_topic=updates_topic, progress=False)
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="batch.schedule")
    loop = threading.Thread(target=run_periodically, args=(job.scheduled, Every(0.5)),
                            kwargs={"stop": stop, "survive": RUN_ERRORS})
    loop.start()
    try:
        first = loaded_announcement(announcements(kafka_bootstrap, updates_topic, 1)[0])
        wait_for(lambda: "skipped: no new events" in caplog.text)
        produce(kafka_bootstrap, events_topic, events[2_000:])
        second = loaded_announcement(announcements(kafka_bootstrap, updates_topic, 2)[1])
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()
    assert second.version > first.version
    assert (first.meta["counts"]["events_read"], second.meta["counts"]["events_read"]) == (
        2_000, 5_000)
    assert f"since version {first.version}" in caplog.text
    assert "failed" not in caplog.text


def test_the_periodic_command_stops_cleanly_on_sigterm(kafka_bootstrap, topics, shop,
                                                       tmp_path):
    events_topic, updates_topic = topics
    produce(kafka_bootstrap, events_topic, list(iter_events(shop))[:1_000])
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "RECSYS_EVENTS_TOPIC": events_topic, "RECSYS_MODEL_UPDATES_TOPIC": updates_topic,
           "RECSYS_MODEL_DIR": str(tmp_path / "store"), "RECSYS_ALS_FACTORS": "4",
           "RECSYS_ALS_ITERATIONS": "2", "RECSYS_SIMILAR_K": "3"}
    worker = subprocess.Popen([sys.executable, "-m", "recsys", "retrain", "--every", "1s"],
                              cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        loaded_announcement(announcements(kafka_bootstrap, updates_topic, 1, timeout_s=30)[0])
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "SIGTERM: stopping after the current run" in stderr
    assert "running every 1 s; first run at " in stderr and " UTC" in stderr
    assert "next run at " in stderr  # logged after the first run
    assert "stopped after" in stderr and "run 1 done" in stderr


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.mark.parametrize("argv, complaint", [
    (["--input", "events.jsonl", "--every", "30m"], "leave out --input"),
    (["--max-runs", "2"], "--max-runs goes with --every or --cron"),
    (["--format", "jsonl"], "--format goes with --input"),
])
def test_the_command_refuses_options_that_do_not_go_together(argv, complaint, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(argv), load_settings({})) == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--max-runs", "0"], ["--every", "1m", "--cron", "* * * * *"]])
def test_the_command_line_refuses_options_it_cannot_parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)


@pytest.mark.parametrize("argv", [["--every", "30"], ["--cron", "* * *"], ["--cron", "0 25 * * *"]])
def test_the_command_refuses_bad_schedules_before_it_starts(argv):
    """A ConfigError: ``recsys`` prints its one line and exits 2, no broker started."""
    with pytest.raises(ConfigError):
        run(command_args(*argv), load_settings({}))
