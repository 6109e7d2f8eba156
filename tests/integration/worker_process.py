"""A ``recsys stream`` worker process on topics of its own, and clients to talk to it (for tests)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from shared.messages import parse_recommendation
from shared.topics import TopicSpec, ensure_topics
from stream.worker import own_topics_env
from topic_reader import latest_values, read_all

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


class WorkerProcess:
    """One worker with unique topics, app id, tables and model store under ``tmp``.

    ``env`` adds settings (``RECSYS_*``) for the worker.
    """

    def __init__(self, bootstrap: str, tmp: Path, web_port: int, env: dict[str, str] | None = None):
        self.bootstrap = bootstrap
        self.run = f"w-{uuid.uuid4().hex[:8]}"
        self.topics = {kind: f"{self.run}-{kind}" for kind in ("events", "recs", "dlq", "models")}
        self.store = tmp / "models"
        self.web_port = web_port
        self.env = {**os.environ, **own_topics_env(
            self.run, bootstrap=bootstrap, model_dir=self.store, table_dir=tmp / "tables",
            web_port=web_port, partitions=PARTITIONS), **(env or {})}
        self.log = tmp / "worker.log"
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.consumers: dict[str, Consumer] = {}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        ensure_topics(self.bootstrap, [TopicSpec(self.topics["events"], PARTITIONS, {}),
                                       TopicSpec(self.topics["recs"], PARTITIONS, {})])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recsys", "stream", "--loglevel", "info"], env=self.env,
            cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def send(self, *events, compression: str | None = None) -> list[tuple[int, int]]:
        """Produce events (dicts keyed by user id, or raw bytes keyed ``raw``) to the events topic;
        returns each one's (partition, offset)."""
        producer = self.producer
        if compression:
            producer = Producer({"bootstrap.servers": self.bootstrap, "compression.type": compression})
        positions = [None] * len(events)

        def delivered(k, err, message):
            assert err is None, err
            positions[k] = message.partition(), message.offset()

        for k, event in enumerate(events):
            if isinstance(event, bytes):
                key, value = b"raw", event
            else:
                key = (event.get("user_id") or event["session_id"]).encode()
                value = json.dumps(event).encode()
            producer.produce(self.topics["events"], key=key, value=value,
                             on_delivery=lambda err, message, k=k: delivered(k, err, message))
        assert producer.flush(30) == 0
        return positions

    def rewind(self, partition: int, offset: int) -> None:
        """Move the stopped worker's committed offset on ``events`` back to ``offset``, as if it
        had crashed before committing what it read from there on."""
        assert self.process is None or self.process.poll() is not None, "stop the worker first"
        # A stopped worker stays in its group (static membership) until its session times
        # out; the group takes commits from outside only once it is empty.
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.run})
        deadline = time.monotonic() + 90
        try:
            while True:
                try:
                    consumer.commit(offsets=[TopicPartition(self.topics["events"], partition,
                                                            offset)], asynchronous=False)
                    return
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.UNKNOWN_MEMBER_ID \
                            or time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        finally:
            consumer.close()

    def read(self, kind: str, n: int, timeout_s: float = 60.0) -> list:
        """The next ``n`` messages on one of the worker's topics (fails when they don't come)."""
        if kind not in self.consumers:
            consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                 "group.id": f"t-{kind}-{self.run}", "auto.offset.reset": "earliest"})
            consumer.subscribe([self.topics[kind]])
            self.consumers[kind] = consumer
        out, deadline = [], time.monotonic() + timeout_s
        while len(out) < n:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            assert time.monotonic() < deadline, \
                f"{len(out)} of {n} on {kind}:\n{self.log.read_text()[-3000:]}"
            for message in self.consumers[kind].consume(n - len(out), timeout=0.5):
                if message.error() is None:
                    out.append(message)
        return out

    def recommendations(self, n: int, timeout_s: float = 60.0) -> list[dict]:
        """The next ``n`` recommendation messages, parsed."""
        return [parse_recommendation(m.value()) for m in self.read("recs", n, timeout_s)]

    def get(self, path: str) -> tuple[int, dict]:
        """(status, JSON body) of one of the worker's HTTP views."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def rows(self, table: str = "users") -> dict[str, bytes]:
        """Key -> the latest row the worker wrote to ``table``'s changelog."""
        records = read_all(self.bootstrap, f"{self.run}-{table}-changelog")
        return {key.decode(): value for key, value in latest_values(records).items()}

    def close(self) -> None:
        self.stop()
        for consumer in self.consumers.values():
            consumer.close()
