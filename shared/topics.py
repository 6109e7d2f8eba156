"""Create the project's topics idempotently with the admin client."""
from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from shared import kafka_log, kafka_security
from shared.errors import RecsysError
from shared.kafka_security import KafkaSecurity


class TopicError(RecsysError, RuntimeError):
    """A topic cannot be created, or exists with fewer partitions than configured; the
    message says which and what to do."""


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
    environment's Kafka security settings, :func:`shared.kafka_security.resolve`);
    its log goes through :mod:`shared.kafka_log`, each repeated line once.

    Raises
    ------
    TopicError
        When the broker refuses a topic (the message has the broker's reason, such
        as a replication factor above the number of brokers), or a topic has too
        few partitions.
    KafkaException
        The client's own errors (no answer within ``timeout_s``, a refused login:
        librdkafka's admin client reports both as a time-out).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap,
                         **kafka_security.resolve(security).confluent(),
                         **kafka_log.client_config()})
    try:
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
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    outcome[name] = "exists"
                elif error.code() < 0:  # the client's own: a time-out, a lost connection
                    raise
                else:
                    raise TopicError(f"cannot create topic {name!r} at {bootstrap}: "
                                     f"{error.str()}{_advice(error)}") from None
        for spec in specs:
            found = _partition_count(admin, spec.name, timeout_s)
            if found < spec.partitions:
                raise TopicError(
                    f"topic {spec.name!r} has {found} partitions, {spec.partitions} are "
                    f"configured; add partitions with kafka-topics --alter or lower the setting")
        return outcome
    finally:
        admin.poll(0)  # hands the client's log lines, if any, to shared.kafka_log


def _advice(error: KafkaError) -> str:
    """What to do about a refused topic, where the broker's text does not say."""
    if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
        return " (RECSYS_REPLICATION_FACTOR sets it)"
    return ""


def _partition_count(admin: AdminClient, name: str, timeout_s: float) -> int:
    """Partitions of ``name`` once the broker's metadata shows the topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        topic = admin.list_topics(topic=name, timeout=timeout_s).topics.get(name)
        if topic is not None and topic.error is None and topic.partitions:
            return len(topic.partitions)
        if time.monotonic() > deadline:
            raise TopicError(f"topic {name!r} did not appear in the broker's metadata "
                             f"within {timeout_s:.0f} s")
        time.sleep(0.1)
