"""A bounded read of everything retained on the ``events`` topic, into columns for training.

:func:`read_topic` notes each partition's first and end offsets when it
starts and reads every partition from its first offset up to that end: events
that arrive meanwhile wait for the next retrain, and the read always ends.
Partitions are read one after another, each in offset order, so the same
retained events give the same columns. The consumer is assigned its
partitions and never commits offsets, so it leaves no trace in any consumer
group.

Message values are parsed with :func:`shared.events.parse_event`; a bad one is
counted under its error code in the :class:`~batch.readers.ReadReport` and
skipped, never fatal. Columns are built ``chunk_events`` events at a time
(:class:`~batch.columns.ColumnsBuilder`), so memory holds one chunk of parsed
events plus the columns.

Example
-------
::

    columns, report, source = read_topic("127.0.0.1:9092", "events")
    source["end_offsets"]   # {"0": 1204, "1": 998, ...}: what this read covers
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from batch.columns import ColumnsBuilder, EventColumns
from batch.readers import DEFAULT_CHUNK_ROWS, ReadReport
from shared import kafka_log, kafka_security
from shared.events import EventError, EventLimits, parse_event

#: Consumer group named in the consumer's configuration; nothing is ever committed to it.
GROUP_ID = "recsys-retrain"
#: Messages asked of the consumer at a time.
_CONSUME_BATCH = 10_000
#: Seconds between two progress lines.
_PROGRESS_EVERY_S = 2.0


class EventLogError(RuntimeError):
    """The topic cannot be read: broker unreachable, topic missing, or a partition stalled."""


@dataclass(frozen=True)
class TopicOffsets:
    """The offsets retained in each partition of a topic at one moment.

    Attributes
    ----------
    start, end : dict of int to int
        Per partition, the first retained offset and the offset the next
        message will get (the low and high watermarks).
    """

    start: dict[int, int]
    end: dict[int, int]

    @property
    def total(self) -> int:
        """Messages retained in all partitions."""
        return sum(self.end[p] - self.start[p] for p in self.end)


def topic_offsets(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> TopicOffsets:
    """The first and end offsets of every partition of ``topic``.

    Raises
    ------
    EventLogError
        When the broker does not answer or the topic does not exist.
    """
    consumer = _consumer(bootstrap)
    try:
        return _offsets(consumer, bootstrap, topic, timeout_s)
    finally:
        consumer.close()


def end_offsets_of(offsets: TopicOffsets) -> dict[str, int]:
    """``offsets.end`` as recorded in a model's meta.json (partition numbers as strings)."""
    return {str(p): offset for p, offset in sorted(offsets.end.items())}


def read_topic(bootstrap: str, topic: str, *, limits: EventLimits = EventLimits(),
               chunk_events: int = DEFAULT_CHUNK_ROWS, timeout_s: float = 30.0,
               progress: bool = True) -> tuple[EventColumns, ReadReport, dict]:
    """Read every event retained on ``topic`` when the read starts.

    Parameters
    ----------
    bootstrap : str
        Bootstrap servers.
    topic : str
    limits : EventLimits
        Bounds on events' size, dwell, price and quantity.
    chunk_events : int
        Parsed events held before they are added to the columns.
    timeout_s : float
        How long to wait for the broker's answers, and for the next message
        of a partition that has not reached its end offset.
    progress : bool
        Report events read, of the total known from the offsets, and the
        rate on stderr.

    Returns
    -------
    columns : EventColumns
        Partition by partition, each in offset order.
    report : ReadReport
        ``rows_read`` counts messages, ``rows_bad`` the bad ones by error code.
    source : dict
        For the model's meta.json: ``kind`` ("topic"), ``topic``,
        ``bootstrap``, ``start_offsets`` and ``end_offsets`` (partition, as a
        string, to offset), ``rows_read`` and ``rows_bad``.

    Raises
    ------
    EventLogError
    """
    consumer = _consumer(bootstrap)
    try:
        offsets = _offsets(consumer, bootstrap, topic, timeout_s)
        builder, report = ColumnsBuilder(), ReadReport()
        sink = _EventSink(builder, report, limits, chunk_events,
                          _Progress(topic, offsets.total, enabled=progress))
        for partition in sorted(offsets.end):
            _read_partition(consumer, topic, partition, offsets.start[partition],
                            offsets.end[partition], sink.add, timeout_s)
        sink.finish()
    finally:
        consumer.close()
    source = {"kind": "topic", "topic": topic, "bootstrap": bootstrap,
              "start_offsets": {str(p): o for p, o in sorted(offsets.start.items())},
              "end_offsets": end_offsets_of(offsets),
              "rows_read": report.rows_read, "rows_bad": dict(report.rows_bad)}
    return builder.build(), report, source


def _consumer(bootstrap: str) -> Consumer:
    """The reading consumer; TLS and SASL from the environment's Kafka security settings."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP_ID,
                     **kafka_security.from_environ().confluent(), **kafka_log.client_config(),
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "enable.partition.eof": True, "auto.offset.reset": "earliest",
                     # A fetch waiting for data would hold up the switch to the next partition.
                     "fetch.wait.max.ms": 20})


def _offsets(consumer: Consumer, bootstrap: str, topic: str, timeout_s: float) -> TopicOffsets:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise EventLogError(f"topic {topic!r} is not on the broker at {bootstrap}"
                                f" ({metadata.error.str()}); create it with `recsys topics`")
        watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                        timeout=timeout_s)
                      for p in sorted(metadata.partitions)}
    except KafkaException as exc:
        raise EventLogError(f"cannot read the offsets of {topic!r} from {bootstrap}:"
                            f" {exc.args[0].str()}") from None
    return TopicOffsets(start={p: low for p, (low, _) in watermarks.items()},
                        end={p: high for p, (_, high) in watermarks.items()})


def _read_partition(consumer: Consumer, topic: str, partition: int, start: int, end: int,
                    add: Callable[[bytes | None], None], timeout_s: float) -> None:
    """Pass the value of every message from ``start`` up to ``end`` to ``add``, in order."""
    if start >= end:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    position, last_seen = start, time.monotonic()
    try:
        while position < end:
            # No more than remain, so the call returns as soon as they are here.
            messages = consumer.consume(min(_CONSUME_BATCH, end - position), timeout=0.5)
            if not messages and time.monotonic() - last_seen > timeout_s:
                raise EventLogError(f"{topic!r} partition {partition}: nothing arrived for"
                                    f" {timeout_s:.0f} s at offset {position} of {end}")
            for message in messages:
                if message.partition() != partition:
                    continue
                last_seen = time.monotonic()
                position = _take(message, end, add, position)
                if position >= end:
                    break
    finally:
        consumer.unassign()


def _take(message, end: int, add: Callable[[bytes | None], None], position: int) -> int:
    """Hand one message on when it lies before ``end``; the position after it."""
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            return end if message.offset() >= end else position
        raise EventLogError(f"{message.topic()!r} partition {message.partition()}:"
                            f" {error.str()}")
    if message.offset() >= end:
        return end
    add(message.value())
    return message.offset() + 1


class _EventSink:
    """Parses message values and adds the good events to the columns a chunk at a time."""

    def __init__(self, builder: ColumnsBuilder, report: ReadReport, limits: EventLimits,
                 chunk_events: int, progress: _Progress):
        self.builder, self.report, self.progress = builder, report, progress
        self.limits, self.chunk_events = vars(limits), chunk_events
        self.pending = []

    def add(self, value: bytes | None) -> None:
        self.report.rows_read += 1
        try:
            self.pending.append(parse_event(value, **self.limits))
        except EventError as error:
            self.report.rows_bad[error.code] = self.report.rows_bad.get(error.code, 0) + 1
        if len(self.pending) >= self.chunk_events:
            self._flush()
        if self.report.rows_read % _CONSUME_BATCH == 0:
            self.progress.update(self.report.rows_read)

    def finish(self) -> None:
        self._flush()
        self.progress.done(self.report)

    def _flush(self) -> None:
        self.builder.add_events(self.pending)
        self.pending = []


class _Progress:
    """Lines on stderr: events read of the total known from the offsets, and the rate."""

    def __init__(self, topic: str, total: int, *, enabled: bool):
        self.topic, self.total, self.enabled = topic, total, enabled
        self.started = self.last = time.monotonic()

    def update(self, read: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= _PROGRESS_EVERY_S:
            self.last = now
            self._say(f"{read:,} of {self.total:,} events"
                      f" ({100 * read / max(self.total, 1):.0f}%), {self._rate(read, now)}")

    def done(self, report: ReadReport) -> None:
        now = time.monotonic()
        bad = ", ".join(f"{code} {n:,}" for code, n in sorted(report.rows_bad.items()))
        self._say(f"read {report.rows_read:,} events in {now - self.started:.1f} s"
                  f" ({self._rate(report.rows_read, now)})"
                  + (f"; bad: {bad}" if bad else ""))

    def _rate(self, read: int, now: float) -> str:
        return f"{read / max(now - self.started, 1e-9):,.0f}/s"

    def _say(self, text: str) -> None:
        if self.enabled:
            print(f"event log {self.topic}: {text}", file=sys.stderr, flush=True)
