"""The Faust app of the stream worker, its topics and tables, built from the settings.

Topics, tables and agents are declared at module level as Faust expects;
everything configurable comes from :func:`shared.config.load_settings`.

State lives in two RocksDB tables (rocksdict driver) with Kafka changelogs,
both written in the partition of the event being processed. Events are keyed
by user id, so a user's events, their ``users`` row and their sessions'
``sessions`` rows all live in one partition and move together on a rebalance.
Rows are JSON bytes (:func:`stream.agents.encode_user`, ``encode_session``), cached
decoded in front of the tables (:class:`stream.tables.RowCache`); the tables send their
changelog messages through the librdkafka producer (:mod:`stream.tables`,
:mod:`stream.kafka_producer`).
"""
from __future__ import annotations

import faust

from shared.config import load_settings
from shared.events import EventLimits
from shared.scoring import ScoringParams
from shared.signals import SignalWeights
from stream import faust_fixes, kafka_producer
from stream.model_cache import ModelCache
from stream.tables import changelog_table

faust_fixes.install()
kafka_producer.install()
settings = load_settings()
limits = EventLimits.from_settings(settings)
weights = SignalWeights.from_settings(settings)
scoring = ScoringParams.from_settings(settings)
models = ModelCache(settings.model_dir)

app = faust.App(
    settings.app_id,
    # aiokafka consumes; librdkafka produces (stream/kafka_producer.py).
    broker=f"{kafka_producer.SCHEME}://{settings.kafka_bootstrap}",
    store="rocksdb://",
    datadir=settings.table_dir,
    web_port=settings.web_port,
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.events_partitions,
    topic_replication_factor=settings.replication_factor,
    # At-least-once delivery; state is idempotent by event_id (users table),
    # and Faust flushes the producer before it commits an offset.
    processing_guarantee="at_least_once",
    # One agent instance per worker: concurrency > 1 can commit past an
    # unfinished event. Scale with partitions and workers instead.
    stream_buffer_maxsize=settings.stream_buffer,
    broker_commit_every=settings.stream_buffer,
    producer_linger_ms=settings.producer_linger_ms,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
)

events_topic = app.topic(settings.events_topic, partitions=settings.events_partitions)

_TABLE_OPTIONS = dict(partitions=settings.events_partitions, options={"driver": "rocksdict"},
                      key_type=bytes, value_type=bytes)
#: user id -> stream.agents.UserState as JSON bytes (stream.agents.encode_user)
users = changelog_table(app, "users", **_TABLE_OPTIONS)
#: session id -> shared.scoring.Session.to_dict() as JSON bytes
sessions = changelog_table(app, "sessions", **_TABLE_OPTIONS)
