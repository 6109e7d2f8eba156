"""Messages cross a real Apache Kafka broker intact, exactly once and in order per key."""
from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from shared.topics import TopicSpec, ensure_topics

KEYS = [f"user-{k}" for k in range(5)]
PER_KEY = 200


def _messages():
    """(key, value) pairs interleaved across keys; the value carries the key's sequence number."""
    return [(key, f"{key}:{seq}") for seq in range(PER_KEY) for key in KEYS]


def _assert_exact_and_ordered(received: dict[str, list[str]]) -> None:
    assert sorted(received) == KEYS
    for key in KEYS:
        assert received[key] == [f"{key}:{seq}" for seq in range(PER_KEY)]


def test_topics_are_created_idempotently(kafka_bootstrap, topic_name):
    spec = TopicSpec(topic_name, 3, {"cleanup.policy": "compact"})
    assert ensure_topics(kafka_bootstrap, [spec]) == {topic_name: "created"}
    assert ensure_topics(kafka_bootstrap, [spec]) == {topic_name: "exists"}


def test_confluent_round_trip(kafka_bootstrap, topic_name):
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 4, {})])
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for key, value in _messages():
        producer.produce(topic_name, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic_name,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic_name])
    received, partitions_of = defaultdict(list), defaultdict(set)
    try:
        for _ in range(200):
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None
                received[message.key().decode()].append(message.value().decode())
                partitions_of[message.key().decode()].add(message.partition())
            if sum(map(len, received.values())) >= len(KEYS) * PER_KEY:
                break
        extra = consumer.consume(100, timeout=1.0)
    finally:
        consumer.close()
    _assert_exact_and_ordered(received)
    assert extra == []
    assert all(len(parts) == 1 for parts in partitions_of.values())


def test_aiokafka_round_trip(kafka_bootstrap, topic_name):
    ensure_topics(kafka_bootstrap, [TopicSpec(topic_name, 4, {})])

    async def round_trip():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for key, value in _messages():
                await producer.send(topic_name, key=key.encode(), value=value.encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                    group_id=topic_name, auto_offset_reset="earliest")
        await consumer.start()
        received = defaultdict(list)
        try:
            while sum(map(len, received.values())) < len(KEYS) * PER_KEY:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                for records in batches.values():
                    for record in records:
                        received[record.key.decode()].append(record.value.decode())
            extra = await consumer.getmany(timeout_ms=1000)
        finally:
            await consumer.stop()
        return received, extra

    received, extra = asyncio.run(round_trip())
    _assert_exact_and_ordered(received)
    assert sum(len(records) for records in extra.values()) == 0
