"""The Faust app of the stream worker, its topics and tables, built from the settings.

Topics, tables and agents are declared at module level as Faust expects;
everything configurable comes from :func:`shared.config.load_settings`.

State lives in one RocksDB table (rocksdict driver) with a Kafka changelog,
written in the partition of the event being processed. Events are keyed by
user id, so a user's events and their ``users`` row (history and latest
sessions, :class:`shared.state.UserState`) live in one partition and move
together on a rebalance, and the row changes in one write (each user's newest
row once per micro-batch, :mod:`stream.agents`). Rows
are JSON bytes (:func:`shared.state.encode_user`), cached decoded in front of
the table (:class:`stream.tables.RowCache`); the table sends its changelog
messages through the librdkafka producer (:mod:`stream.tables`,
:mod:`stream.kafka_producer`).
"""
from __future__ import annotations

import faust

from shared import kafka_security
from shared.config import load_settings
from shared.scoring import ScoringParams
from shared.signals import SignalWeights
from stream import faust_fixes, kafka_producer
from stream.membership import group_instance_id
from stream.model_cache import ModelCache
from stream.tables import changelog_table

faust_fixes.install()
kafka_producer.install()
settings = load_settings()
limits = settings.event_limits()
weights = SignalWeights.from_settings(settings)
scoring = ScoringParams.from_settings(settings)
models = ModelCache(settings.model_dir)

app = faust.App(
    settings.app_id,
    # aiokafka consumes; librdkafka produces (stream/kafka_producer.py).
    broker=f"{kafka_producer.SCHEME}://{settings.kafka_bootstrap}",
    # TLS/SASL of the consumer, of the topics it creates and of the librdkafka producer.
    broker_credentials=kafka_security.from_settings(settings).faust_credentials(),
    store="rocksdb://",
    datadir=settings.table_dir,
    web_port=settings.web_port,
    # The views listen on RECSYS_WEB_HOST only (127.0.0.1 unless set). Other workers forward
    # a user's /recommendations/ request to this one at web_host (Faust's canonical URL),
    # which is the machine's host name when the views listen on every interface.
    web_bind=settings.web_host,
    web_host=None if settings.web_host in ("0.0.0.0", "::") else settings.web_host,
    # Faust's /table/ (raw rows) and /router/ (cluster layout) views: off unless enabled.
    # @app.table_route forwards requests without them (faust.app.router.Router.route_req).
    web_tables_enabled=settings.web_table_views,
    web_router_enabled=settings.web_table_views,
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
    # Static membership: a worker restarted under the same id takes its partitions back
    # without a rebalance and without waiting for the group to expire its old session.
    # The price: a worker that stops for good keeps its partitions, unserved, for
    # RECSYS_SESSION_TIMEOUT_S before the others take them over.
    consumer_group_instance_id=group_instance_id(settings),
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
)

events_topic = app.topic(settings.events_topic, partitions=settings.events_partitions)

_TABLE_OPTIONS = dict(partitions=settings.events_partitions, options={"driver": "rocksdict"},
                      key_type=bytes, value_type=bytes)
#: user id -> shared.state.UserState as JSON bytes (shared.state.encode_user)
users = changelog_table(app, "users", **_TABLE_OPTIONS)
