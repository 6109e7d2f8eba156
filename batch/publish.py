"""Announcing model versions on the model-updates topic.

:func:`announce` sends a saved version's announcement and waits for the
broker's ack; :func:`last_announced` reads the newest announcement back. Stream
workers hot-swap to each version announced.
"""
from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from batch.event_log import GROUP_ID
from shared import kafka_log, kafka_security
from shared.messages import MessageError, model_update_message, parse_model_update

#: Key of every model-updates message: compaction keeps the latest announcement.
MODEL_UPDATE_KEY = b"model"


class AnnounceError(RuntimeError):
    """A version was saved but its announcement on the model-updates topic was not delivered."""


def announce(version: str, path: str | Path, *, created_at: int, bootstrap: str, topic: str,
             timeout_s: float = 30.0,
             security: kafka_security.KafkaSecurity | None = None) -> None:
    """Announce a saved version on the model-updates topic and wait for the broker's ack.

    The message (:func:`shared.messages.model_update_message`) has the key
    :data:`MODEL_UPDATE_KEY`, so a compacted topic keeps the latest only.

    Parameters
    ----------
    version : str
    path : str or Path
        The version's directory; announced as an absolute path.
    created_at : int
        When the version was made, epoch ms.
    bootstrap, topic : str
    timeout_s : float
        How long delivery may take.
    security : KafkaSecurity, optional
        How to connect; default: the environment's Kafka security settings.

    Raises
    ------
    AnnounceError
        When the message is not delivered in time or the broker refuses it.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "message.timeout.ms": int(timeout_s * 1000),
                         **kafka_security.resolve(security).confluent(),
                         **kafka_log.client_config()})
    errors = []
    producer.produce(topic, key=MODEL_UPDATE_KEY,
                     value=model_update_message(version, str(Path(path).resolve()), created_at),
                     on_delivery=lambda error, message: errors.append(error) if error else None)
    undelivered = producer.flush(timeout_s)
    if errors or undelivered:
        reason = errors[0].str() if errors else f"not delivered within {timeout_s:g} s"
        raise AnnounceError(f"version {version} is saved in {path} but announcing it on"
                            f" {topic!r} at {bootstrap} failed: {reason}")


def last_announced(bootstrap: str, topic: str, *, timeout_s: float = 10.0,
                   security: kafka_security.KafkaSecurity | None = None) -> str | None:
    """The version in the newest message on the model-updates topic; None when there is none.

    The consumer connects as ``security`` says (default: the environment's Kafka
    security settings).

    Raises
    ------
    AnnounceError
        When the topic cannot be read.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP_ID,
                         "enable.auto.commit": False,
                         **kafka_security.resolve(security).confluent(),
                         **kafka_log.client_config()})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, 0, high - 1)])
        message = consumer.poll(timeout_s)
    except KafkaException as exc:
        raise AnnounceError(f"cannot read {topic!r} at {bootstrap}: {exc.args[0].str()}") from None
    finally:
        consumer.close()
    if message is None or message.error() is not None:
        raise AnnounceError(f"the newest message on {topic!r} at {bootstrap} did not arrive"
                            f" within {timeout_s:g} s")
    try:
        return parse_model_update(message.value())["version"]
    except MessageError:
        return None
