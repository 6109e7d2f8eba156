"""Create the project's topics idempotently with the admin client."""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from shared import kafka_security
from shared.kafka_security import KafkaSecurity


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project needs: name, partitions and topic-level configuration."""

    name: str
    partitions: int
    config: dict


def project_topics(settings) -> list[TopicSpec]:
    """The four topics of the design, sized from ``settings``."""
    return [
        TopicSpec(settings.events_topic, settings.events_partitions, {}),
        TopicSpec(settings.recommendations_topic, settings.recommendations_partitions, {}),
        TopicSpec(settings.dlq_topic, 1, {}),
        TopicSpec(settings.model_updates_topic, 1, {"cleanup.policy": "compact"}),
    ]


def ensure_topics(bootstrap: str, specs: list[TopicSpec], *, replication_factor: int = 1,
                  timeout_s: float = 30.0, security: KafkaSecurity | None = None
                  ) -> dict[str, str]:
    """Create each missing topic; return ``{name: "created" | "exists"}``.

    An existing topic with fewer partitions than asked for is an error (the
    message says how to fix it), since users' state is placed by partition.
    The admin client connects as ``security`` says (default: the process
    environment's Kafka security settings, :func:`shared.kafka_security.resolve`).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap,
                         **kafka_security.resolve(security).confluent()})
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication_factor,
                  config=s.config) for s in specs],
        operation_timeout=timeout_s, request_timeout=timeout_s)
    outcome = {}
    for name, future in futures.items():
        try:
            future.result()
            outcome[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            outcome[name] = "exists"
    for spec in specs:
        found = _partition_count(admin, spec.name, timeout_s)
        if found < spec.partitions:
            raise RuntimeError(
                f"topic {spec.name!r} has {found} partitions, {spec.partitions} are configured; "
                f"add partitions with kafka-topics --alter or lower the setting")
    return outcome


def _partition_count(admin: AdminClient, name: str, timeout_s: float) -> int:
    """Partitions of ``name`` once the broker's metadata shows the topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        topic = admin.list_topics(topic=name, timeout=timeout_s).topics.get(name)
        if topic is not None and topic.error is None and topic.partitions:
            return len(topic.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name!r} did not appear in the broker's metadata")
        time.sleep(0.1)
