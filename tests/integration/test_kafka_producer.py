"""The worker's librdkafka producer for Faust, against the real broker."""
from __future__ import annotations

import asyncio

import faust
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource

from shared.topics import TopicSpec, ensure_topics
from stream import kafka_producer


def _app(bootstrap: str, name: str) -> faust.App:
    kafka_producer.install()
    return faust.App(name, broker=f"{kafka_producer.SCHEME}://{bootstrap}",
                     producer_linger_ms=5, producer_acks=-1)


def _read_all(bootstrap: str, topic: str, n: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages = []
    try:
        for _ in range(60):
            messages += [m for m in consumer.consume(n, timeout=0.5) if m.error() is None]
            if len(messages) >= n:
                break
    finally:
        consumer.close()
    return messages


def test_sends_resolve_with_their_offsets_and_flush_waits_for_all(kafka_bootstrap, topic_name):
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 4, {})])
    app = _app(kafka_bootstrap, topic_name)
    keys = [f"user-{i}".encode() for i in range(200)]

    async def run():
        producer = app.producer
        assert isinstance(producer, kafka_producer.Producer)
        await producer.start()
        try:
            futures = [await producer.send(topic_name, key, b"v" + key, None, None, None)
                       for key in keys]
            delivered = []
            producer.produce(topic_name, b"direct", b"x", 2,
                             lambda err, msg: delivered.append((err, msg.partition())))
            await producer.flush()
            assert all(f.done() for f in futures) and delivered == [(None, 2)]
            assert not producer._pending
            return [f.result() for f in futures], [producer.key_partition(topic_name, k)
                                                   for k in keys]
        finally:
            await producer.stop()

    metadata, placed = asyncio.run(run())
    assert all(m.topic == topic_name for m in metadata)
    # Keys land where Kafka's Java client would put them (murmur2), as key_partition says.
    assert [m.partition for m in metadata] == [tp.partition for tp in placed]
    assert len({m.partition for m in metadata}) == 4
    on_broker = {(m.key(), m.partition(), m.offset()) for m in _read_all(kafka_bootstrap, topic_name, 201)}
    assert {(k, m.partition, m.offset) for k, m in zip(keys, metadata)} <= on_broker
    assert (b"direct", 2) in {(k, p) for k, p, _ in on_broker}


class _HoldingClient:
    """The real librdkafka client, except that the delivery reports of messages keyed
    ``b"late"`` are held back until :meth:`release`: such a message stays in flight."""

    def __init__(self, client):
        self.client, self.held = client, []

    def produce(self, topic, value, key, on_delivery, **options):
        if key == b"late":
            report = on_delivery
            on_delivery = lambda err, msg: self.held.append((report, err, msg))  # noqa: E731
        self.client.produce(topic, value, key, on_delivery=on_delivery, **options)

    def release(self):
        for report, err, msg in self.held:
            report(err, msg)
        self.held.clear()

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_flush_does_not_wait_for_messages_sent_after_it_began(kafka_bootstrap, topic_name):
    """Under load the agent keeps sending while Faust flushes before a commit: the flush must
    return once the messages sent before it are acknowledged, whatever came after."""
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 2, {})])
    app = _app(kafka_bootstrap, topic_name)

    async def run():
        producer = app.producer
        await producer.start()
        producer._producer = client = _HoldingClient(producer._producer)
        late = []
        try:
            futures = [await producer.send(topic_name, b"k%d" % i, b"v", None, None, None)
                       for i in range(200)]
            generation = producer._generation
            flush = asyncio.ensure_future(producer.flush())
            while producer._generation == generation:  # the flush has taken its place
                await asyncio.sleep(0)
            producer.produce(topic_name, b"late", b"v", None, lambda err, msg: late.append(err))
            await asyncio.wait_for(flush, 30)
            assert all(f.done() and f.exception() is None for f in futures)
            assert late == [] and len(client.held) == 1  # still in flight
            with pytest.raises(asyncio.TimeoutError):  # a new flush waits for it
                await asyncio.wait_for(producer.flush(), 1.0)
            client.release()
            await asyncio.wait_for(producer.flush(), 30)
            assert late == [None] and not producer._pending
        finally:
            client.release()
            await producer.stop()

    asyncio.run(run())


def test_create_topic_makes_a_compacted_topic(kafka_bootstrap, topic_name):
    app = _app(kafka_bootstrap, topic_name)

    async def run():
        await app.producer.start()
        try:
            await app.producer.create_topic(topic_name, 3, 1, compacting=True)
            await app.producer.create_topic(topic_name, 3, 1, compacting=True)  # idempotent
        finally:
            await app.producer.stop()

    asyncio.run(run())
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 3
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"
