"""A Faust table stored in RocksDB (rocksdict driver) keeps its state across worker restarts.

Both kinds of table: Faust's own, and the worker's :class:`stream.tables.ChangelogTable`
(librdkafka changelog sends), written through
Faust's ``table[key] = value`` or, as the worker does, through a RowCache and
``ChangelogTable.write``; it must also rebuild its state from the changelog after a
hard kill and after losing its files.
With a :class:`stream.tables.RowCache` in front, rows that another worker changed
while it held their partition must not be served from the cache afterwards.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from rocksdict import AccessType, Rdict

from shared.topics import TopicSpec, ensure_topics

APP = Path(__file__).with_name("faust_counter_app.py")
ROOT = Path(__file__).resolve().parents[2]
KEYS = ["alice", "bob", "carol"]


def _start_worker(env: dict, log: Path, web_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(APP), "worker", "--loglevel", "warn",
                             "--web-port", str(web_port)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)


def _produce(bootstrap: str, topic: str, rounds: range) -> None:
    """Each round, one event per key; a key always goes to the same of the two partitions,
    and both partitions have keys."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in rounds:
        for i, key in enumerate(KEYS):
            producer.produce(topic, key=key, value=str(n).encode(), partition=i % 2)
    assert producer.flush(30) == 0


def _read_counts(consumer: Consumer, expected: dict[str, int], worker: subprocess.Popen,
                 log: Path, writers: set | None = None) -> dict[str, int]:
    """Latest count per key from the worker's output, once every key reached ``expected``
    (the names of the workers that wrote output are added to ``writers``)."""
    latest: dict[str, int] = {}
    deadline = time.monotonic() + 90
    while any(latest.get(k, 0) < n for k, n in expected.items()):
        alive = worker.poll() is None and time.monotonic() < deadline
        assert alive, f"worker output incomplete: {latest}\n{log.read_text()[-3000:]}"
        for message in consumer.consume(100, timeout=0.5):
            output, name = message.value().decode().split("@")
            key, count = output.split("=")
            latest[key] = max(latest.get(key, 0), int(count))
            if writers is not None:
                writers.add(name)
    return latest


def _counts_on_disk(datadir: Path) -> dict[str, int]:
    """Rounds per key read straight from the table's RocksDB files, with the worker stopped."""
    found = {}
    for path in datadir.rglob("counts-*.db"):
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            found.update({key.decode(): len(value.split(b",")) for key, value in db.items()
                          if not key.startswith(b"__faust")})
        finally:
            db.close()
    return found


@pytest.mark.parametrize("table", ["faust", "changelog", "cached"])
def test_table_survives_worker_restart(kafka_bootstrap, topic_name, tmp_path, free_port, table):
    out_topic = f"{topic_name}-out"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 2, {}), TopicSpec(out_topic, 1, {})])
    env = dict(os.environ, COUNTER_BOOTSTRAP=kafka_bootstrap, COUNTER_TOPIC=topic_name,
               COUNTER_OUT=out_topic, COUNTER_DATADIR=str(tmp_path / "data"),
               COUNTER_APP_ID=f"counter-{topic_name}", COUNTER_TABLE=table,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    log = tmp_path / "worker.log"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": out_topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([out_topic])
    try:
        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, range(1, 5))
        assert _read_counts(consumer, {k: 4 for k in KEYS}, worker, log) == {k: 4 for k in KEYS}
        _stop_worker(worker)

        assert _counts_on_disk(tmp_path / "data") == {k: 4 for k in KEYS}

        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, range(5, 8))
        assert _read_counts(consumer, {k: 7 for k in KEYS}, worker, log) == {k: 7 for k in KEYS}
        if table == "faust":
            _stop_worker(worker)
            return
        # A hard kill: the worker dies between commits, with events processed and
        # their changelog messages sent but their offsets not committed.
        worker.kill()
        worker.wait(timeout=30)
        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, range(8, 9))
        assert _read_counts(consumer, {k: 8 for k in KEYS}, worker, log) == {k: 8 for k in KEYS}
        _stop_worker(worker)
        # Lost files: the whole table comes back from its changelog.
        shutil.rmtree(tmp_path / "data")
        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, range(9, 10))
        assert _read_counts(consumer, {k: 9 for k in KEYS}, worker, log) == {k: 9 for k in KEYS}
        _stop_worker(worker)
    finally:
        consumer.close()
        if worker.poll() is None:
            worker.kill()


def test_cached_rows_follow_partitions_between_workers(kafka_bootstrap, topic_name, tmp_path,
                                                      free_port):
    """Worker A caches every row; B joins and takes a partition, counting rounds there;
    B leaves and A takes the partition back. A's counts must include B's rounds."""
    out_topic = f"{topic_name}-out"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 2, {}), TopicSpec(out_topic, 1, {})])
    base = dict(os.environ, COUNTER_BOOTSTRAP=kafka_bootstrap, COUNTER_TOPIC=topic_name,
                COUNTER_OUT=out_topic, COUNTER_APP_ID=f"counter-{topic_name}",
                COUNTER_TABLE="cached",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env_a = dict(base, COUNTER_NAME="a", COUNTER_DATADIR=str(tmp_path / "a"))
    env_b = dict(base, COUNTER_NAME="b", COUNTER_DATADIR=str(tmp_path / "b"))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": out_topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([out_topic])
    workers = []
    try:
        workers.append(worker_a := _start_worker(env_a, log_a, free_port()))
        _produce(kafka_bootstrap, topic_name, range(1, 4))
        assert _read_counts(consumer, {k: 3 for k in KEYS}, worker_a, log_a) == {k: 3 for k in KEYS}

        workers.append(worker_b := _start_worker(env_b, log_b, free_port()))
        writers: set = set()
        rounds = 3
        while "b" not in writers:  # until B holds a partition and has counted in it
            assert rounds < 60, f"worker b never took a partition\n{log_b.read_text()[-3000:]}"
            rounds += 1
            _produce(kafka_bootstrap, topic_name, range(rounds, rounds + 1))
            _read_counts(consumer, {k: rounds for k in KEYS}, worker_b, log_b, writers)
        _stop_worker(worker_b)

        rounds += 1
        _produce(kafka_bootstrap, topic_name, range(rounds, rounds + 1))
        assert _read_counts(consumer, {k: rounds for k in KEYS}, worker_a, log_a) == {
            k: rounds for k in KEYS}
        _stop_worker(worker_a)
    finally:
        consumer.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
