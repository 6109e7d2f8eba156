"""Reading a whole topic as it is now, for the tests that check what a worker wrote."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message now in ``topic``, partition by partition, in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"v-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        partitions = sorted(metadata.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out, done = [], {p for p in partitions if ends[p] == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: read {len(out)}, ends {ends}"
            for record in consumer.consume(1000, timeout=0.5):
                if record.error() is None:
                    out.append(record)
                    if record.offset() >= ends[record.partition()] - 1:
                        done.add(record.partition())
                elif record.error().code() == KafkaError._PARTITION_EOF:
                    done.add(record.partition())  # at its end (the last records compacted)
        out.sort(key=lambda r: (r.partition(), r.offset()))
        return out
    finally:
        consumer.close()


def latest_values(records: list) -> dict[bytes, bytes]:
    """Key -> the latest value among ``records`` (in offset order per partition); a
    tombstone (None) removes its key."""
    out: dict[bytes, bytes] = {}
    for record in records:
        if record.value() is None:
            out.pop(record.key(), None)
        else:
            out[record.key()] = record.value()
    return out
