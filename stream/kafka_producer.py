"""Faust's producer on librdkafka (confluent-kafka) instead of aiokafka.

Every table write of the worker sends a changelog message and every event a
recommendation, so the producer's cost per message bounds the worker. With
aiokafka each message costs about 100-140 µs of the event loop's time here
(batches built, produce requests encoded and responses decoded in Python);
librdkafka does all of that in its own C threads and the loop only pays for
``produce()`` and for resolving a future (``benchmarks/stream.py`` measures
the worker with it; the README has the figures).

How it fits Faust: Faust makes the app's producer from the transport of its
``broker`` URL, so ``librdkafka://host:port`` (registered by :func:`install`)
selects :class:`Transport`, which is aiokafka's with this producer: the
consumer stays on aiokafka. Faust awaits
:meth:`Producer.send` for a future of the message's ``RecordMetadata`` and,
before it commits offsets, awaits :meth:`Producer.flush`, which returns
only once every message handed over before the call is acknowledged by the
broker, so at-least-once holds exactly as with the aiokafka producer. Messages
handed over while it waits do not hold it up: under sustained load the
agent never stops producing, and a flush that waited for nothing in flight
held each commit (and the consumer's fetcher behind it) for most of a second.

librdkafka reports deliveries from ``poll()``; the callbacks only append to a
deque and a task on the event loop polls and resolves the futures, so no
future is touched from another thread. Keys without an explicit partition
go where Kafka's Java client would put them (``murmur2_random``).

The producer and the admin client it creates topics with connect as the app's
``broker_credentials`` say (:func:`shared.kafka_security.from_faust_credentials`),
so TLS and SASL are those of the aiokafka consumer.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import confluent_kafka
from aiokafka.partitioner import murmur2
from faust.transport import drivers
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import Producer as BaseProducer
from faust.types.tuples import TP, RecordMetadata

from shared import kafka_log, kafka_security
from shared.kafka_security import KafkaSecurity
from shared.topics import TopicSpec, ensure_topics
from stream.faust_fixes import require_tested_versions

#: URL scheme of the transport with this producer (``broker="librdkafka://..."``).
SCHEME = "librdkafka"
#: How often the event loop collects delivery reports while messages are in flight.
POLL_INTERVAL_S = 0.002
#: How long the loop sleeps between polls while nothing is in flight.
IDLE_POLL_S = 0.05


class ProducerError(Exception):
    """A message could not be delivered (the broker's or librdkafka's error)."""


class Producer(BaseProducer):
    """Faust's producer interface, backed by ``confluent_kafka.Producer``."""

    _producer: confluent_kafka.Producer | None = None

    def __post_init__(self) -> None:
        self._delivered: collections.deque = collections.deque()
        # Messages in flight per flush generation: a flush waits for its own and older ones.
        self._generation = 0
        self._pending: dict[int, int] = {}
        self._partitions: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._after_deliveries: list[Callable[[], None]] = []

    def bootstrap_servers(self) -> str:
        """The brokers of the app's ``broker`` URL, as librdkafka lists them."""
        return ",".join(f"{url.host}:{url.port or 9092}" for url in self.transport.url)

    def security(self) -> KafkaSecurity:
        """How to connect: the app's ``broker_credentials``, as its aiokafka consumer does."""
        return kafka_security.from_faust_credentials(self.credentials, self.ssl_context)

    def librdkafka_config(self) -> dict:
        """The confluent-kafka configuration, from Faust's producer and broker settings."""
        return {
            "bootstrap.servers": self.bootstrap_servers(),
            **self.security().confluent(),
            "client.id": self.client_id,
            "acks": "all" if self.acks == -1 else str(self.acks),
            "enable.idempotence": self.acks == -1,
            "linger.ms": max(self.linger_ms, 1),
            "compression.type": self.compression_type or "none",
            "message.max.bytes": self.max_request_size,
            # Faust's request timeout bounds a message's whole delivery.
            "message.timeout.ms": int(self.request_timeout * 1000),
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }

    async def on_start(self) -> None:
        """Create the librdkafka producer (Faust starts the buffer)."""
        await super().on_start()
        # librdkafka's own log through logging, a repeated line once per interval.
        self._producer = confluent_kafka.Producer({**self.librdkafka_config(),
                                                   **kafka_log.client_config()})
        self.add_future(self._poll_deliveries())

    async def on_stop(self) -> None:
        """Deliver what is in flight, then drop the client."""
        await super().on_stop()
        if self._producer is not None:
            await self.flush()
            self._producer = None

    async def _poll_deliveries(self) -> None:
        """Collect delivery reports and resolve their futures, on the event loop."""
        while not self.should_stop:
            self._resolve()
            if self._pending:
                await asyncio.sleep(POLL_INTERVAL_S)
            else:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass

    def _resolve(self) -> None:
        """Run the delivery callbacks of every report librdkafka has, on the event loop."""
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        delivered = self._delivered
        if not delivered:
            return
        pending = self._pending
        while delivered:
            callback, generation, err, msg = delivered.popleft()
            left = pending[generation] - 1
            if left:
                pending[generation] = left
            else:
                del pending[generation]
            callback(err, msg)
        for hook in self._after_deliveries:
            hook()

    def _try_produce(self, topic: str, key: bytes | None, value: bytes | None,
                     partition: int | None, on_delivery: Callable[[Any, Any], None],
                     **options) -> bool:
        """Hand one message to librdkafka; False when its queue is full."""
        delivered, generation = self._delivered, self._generation
        try:
            self._producer.produce(
                topic, value, key, partition=-1 if partition is None else partition,
                on_delivery=lambda err, msg: delivered.append((on_delivery, generation, err, msg)),
                **options)
        except BufferError:
            return False
        self._pending[generation] = self._pending.get(generation, 0) + 1
        if not self._wake.is_set():
            self._wake.set()
        return True

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                partition: int | None, on_delivery: Callable[[Any, Any], None]) -> None:
        """Hand one message to librdkafka; ``on_delivery(err, msg)`` runs on the event loop.

        For callers that cannot await (a table write): when librdkafka's
        queue is full it blocks until the broker has taken some of it.
        """
        while not self._try_produce(topic, key, value, partition, on_delivery):
            self._producer.poll(POLL_INTERVAL_S)

    def after_deliveries(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` after each round of delivery callbacks (to persist offsets once)."""
        self._after_deliveries.append(hook)

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None,
                   headers: Any, *, transactional_id: str | None = None
                   ) -> Awaitable[RecordMetadata]:
        """Hand one message to librdkafka; the future resolves when the broker has it."""
        if transactional_id:
            raise NotImplementedError("the librdkafka producer does not do transactions")
        if self._producer is None:
            raise ProducerError("producer is not started")
        future = self.loop.create_future()
        options: dict[str, Any] = {}
        if timestamp:
            options["timestamp"] = int(timestamp * 1000.0)
        if headers:
            options["headers"] = list(headers.items()) if isinstance(headers, Mapping) else headers

        def settle(err, msg) -> None:
            if future.done():
                return
            if err is not None:
                future.set_exception(ProducerError(str(err)))
            else:
                tp = TP(msg.topic(), msg.partition())
                kind, ts = msg.timestamp()
                future.set_result(RecordMetadata(tp.topic, tp.partition, tp, msg.offset(),
                                                 ts / 1000.0, kind))

        while not self._try_produce(topic, key, value, partition, settle, **options):
            self._resolve()  # librdkafka's queue is full: let it drain
            await asyncio.sleep(POLL_INTERVAL_S)
        return future

    async def send_and_wait(self, topic: str, key: bytes | None, value: bytes | None,
                            partition: int | None, timestamp: float | None,
                            headers: Any, *, transactional_id: str | None = None
                            ) -> RecordMetadata:
        """Send one message and wait until the broker has it."""
        future = await self.send(topic, key, value, partition, timestamp, headers,
                                 transactional_id=transactional_id)
        return await future

    async def flush(self) -> None:
        """Return once Faust's buffer is empty and every message handed over before this call
        is acknowledged (those handed over meanwhile are not waited for)."""
        await self.buffer.flush()
        generation = self._generation
        self._generation += 1
        while self._waiting_for(generation):
            self._resolve()
            if self._waiting_for(generation):
                await asyncio.sleep(POLL_INTERVAL_S)

    def _waiting_for(self, generation: int) -> bool:
        """Whether a message of ``generation`` or before is still in flight."""
        return any(g <= generation for g in self._pending)

    def key_partition(self, topic: str, key: bytes) -> TP:
        """The partition a keyed message goes to (Kafka's murmur2, as librdkafka places it)."""
        count = self._partitions.get(topic)
        if count is None:
            metadata = self._producer.list_topics(topic, timeout=10)
            count = self._partitions[topic] = len(metadata.topics[topic].partitions)
        return TP(topic, (murmur2(key) & 0x7FFFFFFF) % count)

    async def create_topic(self, topic: str, partitions: int, replication: int, *,
                           config: Mapping[str, Any] | None = None, timeout: Any = 30.0,
                           retention: Any = None, compacting: bool | None = None,
                           deleting: bool | None = None,
                           ensure_created: bool = False) -> None:
        """Create a topic Faust declares (its changelogs, repartition topics) if missing."""
        topic_config = {key: str(value) for key, value in (config or {}).items()}
        if compacting:
            topic_config["cleanup.policy"] = "compact"
        if retention:
            topic_config["retention.ms"] = str(int(float(retention) * 1000))
        bootstrap, security = self.bootstrap_servers(), self.security()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: ensure_topics(bootstrap, [TopicSpec(topic, partitions, topic_config)],
                                        replication_factor=replication, security=security))

    def supports_headers(self) -> bool:
        """Kafka >= 0.11 carries headers."""
        return True


class Transport(aiokafka_driver.Transport):
    """The aiokafka transport with the librdkafka producer."""

    Producer = Producer


def install() -> None:
    """Register ``librdkafka://`` as a Faust transport (idempotent); refuses untested Faust
    and aiokafka versions (:func:`stream.faust_fixes.require_tested_versions`)."""
    require_tested_versions("stream/kafka_producer.py")
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
