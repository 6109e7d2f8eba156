"""Every kind of Kafka client of the project over SASL_PLAINTEXT, against a broker of its own.

The broker (:func:`shared.broker.ephemeral_broker` with ``sasl_users``) has its
usual PLAINTEXT listener and a SASL_PLAINTEXT one that accepts one user with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512. The clients are configured only through
the security settings (:func:`shared.kafka_security.from_environ`): with the
right password each works, with a wrong one each is refused by the broker.
The last test runs a whole worker on the SASL listener (its consumer, producer,
topic admin and model watcher) and checks what its HTTP server exposes.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError as AIOKafkaError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from worker_process import WorkerProcess

from batch.produce import producer_config
from batch.retrain import announce, last_announced, retrain
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.broker import ephemeral_broker
from shared.config import load_settings
from shared.kafka_security import KafkaSecurity, from_environ
from shared.topics import TopicSpec, ensure_topics
from stream import kafka_producer

USER, PASSWORD = "alice", "alice-pw-1"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
#: How long a client with a wrong password is given before the test looks at its errors.
REFUSED_WITHIN_S = 2.0


def _environ(mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {"RECSYS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RECSYS_KAFKA_SASL_MECHANISM": mechanism, "RECSYS_KAFKA_SASL_USERNAME": USER,
            "RECSYS_KAFKA_SASL_PASSWORD": password}


def _security(mechanism: str, password: str = PASSWORD) -> KafkaSecurity:
    return from_environ(_environ(mechanism, password))


@pytest.fixture(scope="module")
def broker():
    with ephemeral_broker(Path(load_settings().kafka_home).expanduser(),
                          sasl_users={USER: PASSWORD}) as started:
        yield started


def _produce(bootstrap: str, topic: str, security: KafkaSecurity, n: int) -> None:
    """``n`` messages with the replay producer's configuration (batch.produce)."""
    producer = Producer(producer_config(bootstrap, security=security))
    errors = []
    for i in range(n):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors, errors


def _consume_confluent(bootstrap: str, topic: str, security: KafkaSecurity, n: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-confluent",
                         "auto.offset.reset": "earliest", **security.confluent()})
    consumer.subscribe([topic])
    values, deadline = [], time.monotonic() + 30
    try:
        while len(values) < n and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(n, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return values


async def _consume_aiokafka(bootstrap: str, topic: str, security: KafkaSecurity,
                            n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", **security.aiokafka())
    await consumer.start()
    values, deadline = [], time.monotonic() + 30
    try:
        while len(values) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [r.value for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return values


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_admin_producer_and_consumers_work_with_the_right_password(broker, topic_name, mechanism):
    security = _security(mechanism)
    assert ensure_topics(broker.sasl_bootstrap, [TopicSpec(topic_name, 2, {})],
                         security=security) == {topic_name: "created"}
    _produce(broker.sasl_bootstrap, topic_name, security, 20)
    expected = sorted(f"v{i}".encode() for i in range(20))
    assert sorted(_consume_confluent(broker.sasl_bootstrap, topic_name, security, 20)) == expected
    assert sorted(asyncio.run(_consume_aiokafka(broker.sasl_bootstrap, topic_name, security,
                                                20))) == expected


def test_model_announcements_go_over_sasl(broker, topic_name):
    security = _security("SCRAM-SHA-256")
    ensure_topics(broker.sasl_bootstrap, [TopicSpec(topic_name, 1, {"cleanup.policy": "compact"})],
                  security=security)
    announce("v-sasl", "/models/v-sasl", created_at=1, bootstrap=broker.sasl_bootstrap,
             topic=topic_name, security=security)
    assert last_announced(broker.sasl_bootstrap, topic_name, security=security) == "v-sasl"


def test_the_workers_librdkafka_producer_connects_with_the_apps_credentials(broker, topic_name):
    kafka_producer.install()
    security = _security("SCRAM-SHA-512")
    app = faust.App(topic_name, broker=f"{kafka_producer.SCHEME}://{broker.sasl_bootstrap}",
                    broker_credentials=security.faust_credentials(), producer_acks=-1)

    async def run():
        producer = app.producer
        assert producer.security() is security
        await producer.start()
        try:
            await producer.create_topic(topic_name, 2, 1)  # through shared.topics, over SASL
            futures = [await producer.send(topic_name, b"k%d" % i, b"v%d" % i, None, None, None)
                       for i in range(10)]
            await producer.flush()
            return [f.result() for f in futures]
        finally:
            await producer.stop()

    metadata = asyncio.run(run())
    assert len(metadata) == 10 and all(m.offset >= 0 for m in metadata)
    assert len(_consume_confluent(broker.sasl_bootstrap, topic_name, security, 10)) == 10


def _authentication_failed(errors: list) -> bool:
    return any(e.code() == KafkaError._AUTHENTICATION for e in errors)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_every_client_is_refused_with_a_wrong_password(broker, topic_name, mechanism, caplog):
    good, bad = _security(mechanism), _security(mechanism, "wrong-password")
    ensure_topics(broker.sasl_bootstrap, [TopicSpec(topic_name, 1, {})], security=good)

    with pytest.raises(KafkaException):  # librdkafka's admin reports only the time-out
        ensure_topics(broker.sasl_bootstrap, [TopicSpec(f"{topic_name}-x", 1, {})],
                      timeout_s=REFUSED_WITHIN_S, security=bad)

    errors: list = []
    producer = Producer(producer_config(broker.sasl_bootstrap, security=bad, **{
        "error_cb": errors.append, "message.timeout.ms": int(REFUSED_WITHIN_S * 1000)}))
    producer.produce(topic_name, value=b"never")
    assert producer.flush(REFUSED_WITHIN_S + 5) == 0  # the message timed out undelivered
    assert _authentication_failed(errors), errors

    errors = []
    consumer = Consumer({"bootstrap.servers": broker.sasl_bootstrap, "group.id": topic_name,
                         "error_cb": errors.append, **bad.confluent()})
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(topic_name, timeout=REFUSED_WITHIN_S)
        consumer.poll(1)
    finally:
        consumer.close()
    assert _authentication_failed(errors), errors

    kafka_producer.install()
    app = faust.App(topic_name, broker=f"{kafka_producer.SCHEME}://{broker.sasl_bootstrap}",
                    broker_credentials=bad.faust_credentials())
    errors = []
    client = Producer({**app.producer.librdkafka_config(), "error_cb": errors.append})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=REFUSED_WITHIN_S)
    client.poll(1)
    assert _authentication_failed(errors), errors

    async def aiokafka_start():
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.sasl_bootstrap, group_id=None,
                                    request_timeout_ms=int(REFUSED_WITHIN_S * 1000),
                                    **bad.aiokafka())
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(AIOKafkaError):
        asyncio.run(aiokafka_start())
    assert "SaslAuthenticationFailed" in caplog.text


def _status(port: int, path: str, host: str = "127.0.0.1") -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait(condition, timeout_s: float, worker: WorkerProcess, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except OSError:  # the server is not listening yet
            pass
        assert worker.process.poll() is None, worker.log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"{what}:\n{worker.log.read_text()[-4000:]}"
        time.sleep(0.3)


def test_a_worker_on_the_sasl_listener_serves_on_loopback_without_table_views(
        broker, tmp_path, free_port):
    """The worker reads, writes, creates its topics and follows model updates over SASL
    (SCRAM-SHA-512, password from a file); its own test clients use the PLAINTEXT listener.
    """
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    worker_env = {**_environ("SCRAM-SHA-512"), "KAFKA_BOOTSTRAP": broker.sasl_bootstrap,
                  "RECSYS_KAFKA_SASL_PASSWORD_FILE": str(password_file),
                  "RECSYS_MODEL_POLL_S": "0.2"}
    del worker_env["RECSYS_KAFKA_SASL_PASSWORD"]
    for name in ("RECSYS_WEB_HOST", "RECSYS_WEB_TABLE_VIEWS", "WEB_BIND", "WEB_HOST",
                 "APP_WEB_TABLES_ENABLED", "APP_WEB_ROUTER_ENABLED"):
        if name in os.environ:
            pytest.skip(f"{name} is set in this environment; the test checks the defaults")
    worker = WorkerProcess(broker.bootstrap, tmp_path / "worker", free_port(), worker_env)
    worker.store.mkdir(parents=True)
    worker.start()
    try:
        _wait(lambda: _status(worker.web_port, "/health/") == 503, 120, worker,
              "the worker's /health/ did not answer (no_model)")
        assert _status(worker.web_port, "/table/") == 404
        assert _status(worker.web_port, "/table/users/") == 404
        assert _status(worker.web_port, "/router/") == 404
        # Bound to 127.0.0.1 only: another address of the host (127.0.0.2 is on Linux's
        # loopback interface too) is refused.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", worker.web_port), timeout=2).close()

        # A version saved to the running worker's store is loaded once it is announced.
        columns, _ = generate_columns(20_000, seed=5, params=ShopParams(n_items=200,
                                                                        n_categories=4))
        model, path = retrain(columns, worker.store, progress=False,
                              params=TrainingParams.from_settings(load_settings(
                                  als_factors=8, als_iterations=4, similar_k=20)))
        announce(model.version, path, created_at=int(time.time() * 1000),
                 bootstrap=broker.sasl_bootstrap, topic=worker.topics["models"],
                 security=from_environ(worker_env))
        _wait(lambda: worker.get("/health/") == (200, {"status": "ok",
                                                       "model_version": model.version}),
              60, worker, "the announced model was not loaded")

        item = str(model.item_ids[0])
        worker.send({"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": item,
                     "type": "view", "ts": 1_750_000_000_000})
        [rec] = worker.recommendations(1, timeout_s=90)
        assert rec["event_id"] == "e1" and rec["model_version"] == model.version
        status, latest = worker.get("/recommendations/u1/")  # @table_route without /router/
        assert status == 200 and latest["event_id"] == "e1"
    finally:
        worker.close()
