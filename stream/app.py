"""The Faust app of the stream worker, its topics and tables, built from the settings.

Topics, tables and agents are declared at module level as Faust expects;
everything configurable comes from :func:`shared.config.load_settings`.

State lives in two RocksDB tables (JSON values) (rocksdict driver) with Kafka changelogs,
both written in the partition of the event being processed. Events are keyed
by user id, so a user's events, their ``users`` row and their sessions'
``sessions`` rows all live in one partition and move together on a rebalance.
"""
from __future__ import annotations

import faust

from shared.config import load_settings
from shared.events import EventLimits
from shared.scoring import ScoringParams
from shared.signals import SignalWeights
from stream import faust_fixes
from stream.model_cache import ModelCache

faust_fixes.install()
settings = load_settings()
limits = EventLimits.from_settings(settings)
weights = SignalWeights.from_settings(settings)
scoring = ScoringParams.from_settings(settings)
models = ModelCache(settings.model_dir)

app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="rocksdb://",
    datadir=settings.table_dir,
    web_port=settings.web_port,
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.events_partitions,
    topic_replication_factor=settings.replication_factor,
    # At-least-once delivery; state is idempotent by event_id (users table).
    processing_guarantee="at_least_once",
    # One event at a time per worker: concurrency > 1 can commit past an
    # unfinished event. Scale with partitions and workers instead.
    stream_buffer_maxsize=settings.stream_buffer,
    broker_commit_every=settings.stream_buffer,
    producer_linger_ms=settings.producer_linger_ms,
    producer_max_batch_size=1 << 20,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
)

events_topic = app.topic(settings.events_topic, partitions=settings.events_partitions)
recommendations_topic = app.topic(settings.recommendations_topic)
dlq_topic = app.topic(settings.dlq_topic)

#: user id -> {"history": History.to_dict(), "recent": [event ids], "last": recommendation}
users = app.Table("users", partitions=settings.events_partitions, options={"driver": "rocksdict"})
#: session id -> Session.to_dict()
sessions = app.Table("sessions", partitions=settings.events_partitions,
                     options={"driver": "rocksdict"})


@app.task
async def size_producer_buffer() -> None:
    """Raise Faust's producer buffer limit (100 messages upstream), once the worker starts.

    Every table write queues a changelog message; past the limit Faust makes
    the stream wait until the buffer drains, which stalls a busy worker.
    """
    app.producer.buffer.max_messages = settings.stream_buffer * 4
