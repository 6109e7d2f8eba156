"""A Faust table stored in RocksDB (rocksdict driver) keeps its state across a worker restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from rocksdict import AccessType, Rdict

from shared.topics import TopicSpec, ensure_topics

APP = Path(__file__).with_name("faust_counter_app.py")
KEYS = ["alice", "bob", "carol"]


def _start_worker(env: dict, log: Path, web_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(APP), "worker", "--loglevel", "warn",
                             "--web-port", str(web_port)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)


def _produce(bootstrap: str, topic: str, rounds: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for _ in range(rounds):
        for key in KEYS:
            producer.produce(topic, key=key, value=b"e")
    assert producer.flush(30) == 0


def _read_counts(consumer: Consumer, expected: dict[str, int], worker: subprocess.Popen,
                 log: Path) -> dict[str, int]:
    """Latest count per key from the worker's output, once every key reached ``expected``."""
    latest: dict[str, int] = {}
    deadline = time.monotonic() + 90
    while any(latest.get(k, 0) < n for k, n in expected.items()):
        alive = worker.poll() is None and time.monotonic() < deadline
        assert alive, f"worker output incomplete: {latest}\n{log.read_text()[-3000:]}"
        for message in consumer.consume(100, timeout=0.5):
            key, count = message.value().decode().split("=")
            latest[key] = max(latest.get(key, 0), int(count))
    return latest


def _counts_on_disk(datadir: Path) -> dict[str, int]:
    """The table read straight from its RocksDB files, with the worker stopped."""
    found = {}
    for path in datadir.rglob("counts-*.db"):
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            found.update({json.loads(key): int(value) for key, value in db.items()
                          if not key.startswith(b"__faust")})
        finally:
            db.close()
    return found


def test_table_survives_worker_restart(kafka_bootstrap, topic_name, tmp_path, free_port):
    out_topic = f"{topic_name}-out"
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 2, {}), TopicSpec(out_topic, 1, {})])
    env = dict(os.environ, COUNTER_BOOTSTRAP=kafka_bootstrap, COUNTER_TOPIC=topic_name,
               COUNTER_OUT=out_topic, COUNTER_DATADIR=str(tmp_path / "data"),
               COUNTER_APP_ID=f"counter-{topic_name}")
    log = tmp_path / "worker.log"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": out_topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([out_topic])
    try:
        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, rounds=4)
        assert _read_counts(consumer, {k: 4 for k in KEYS}, worker, log) == {k: 4 for k in KEYS}
        _stop_worker(worker)

        assert _counts_on_disk(tmp_path / "data") == {k: 4 for k in KEYS}

        worker = _start_worker(env, log, free_port())
        _produce(kafka_bootstrap, topic_name, rounds=3)
        assert _read_counts(consumer, {k: 7 for k in KEYS}, worker, log) == {k: 7 for k in KEYS}
        _stop_worker(worker)
    finally:
        consumer.close()
        if worker.poll() is None:
            worker.kill()
