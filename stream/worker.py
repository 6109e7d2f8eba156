"""``recsys stream``: run one worker of the stream app."""
from __future__ import annotations

import gc
import sys

from threadpoolctl import threadpool_limits

from shared.broker import ensure_broker
from shared.topics import TopicSpec, ensure_topics, project_topics

#: Cyclic collector thresholds of the worker (CPython's default: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


def own_topics_env(run: str, *, bootstrap: str, model_dir, table_dir, web_port: int,
                   partitions: int | None = None) -> dict[str, str]:
    """Settings (``RECSYS_*`` variables) for a worker whose topics, consumer group and tables
    are its own, named after ``run``: ``<run>-events``, ``-recs``, ``-dlq``, ``-models``.

    For workers that share a broker without sharing anything else (tests,
    benchmarks); ``partitions`` sets those of the events and recommendations.

    >>> env = own_topics_env("t1", bootstrap="b:9092", model_dir="m", table_dir="t", web_port=1)
    >>> env["RECSYS_EVENTS_TOPIC"], env["RECSYS_APP_ID"], "RECSYS_EVENTS_PARTITIONS" in env
    ('t1-events', 't1', False)
    """
    env = {"KAFKA_BOOTSTRAP": bootstrap, "RECSYS_APP_ID": run,
           "RECSYS_EVENTS_TOPIC": f"{run}-events", "RECSYS_RECOMMENDATIONS_TOPIC": f"{run}-recs",
           "RECSYS_DLQ_TOPIC": f"{run}-dlq", "RECSYS_MODEL_UPDATES_TOPIC": f"{run}-models",
           "RECSYS_MODEL_DIR": str(model_dir), "RECSYS_TABLE_DIR": str(table_dir),
           "RECSYS_WEB_PORT": str(web_port)}
    if partitions is not None:
        env["RECSYS_EVENTS_PARTITIONS"] = env["RECSYS_RECOMMENDATIONS_PARTITIONS"] = str(partitions)
    return env


def add_arguments(parser) -> None:
    """Options of ``recsys stream``."""
    parser.add_argument("--loglevel", default="info",
                        choices=["crit", "error", "warn", "info", "debug"])


def run(args, settings) -> int:
    """Create the topics, load the newest model, and run a worker until it is stopped."""
    bootstrap = ensure_broker(settings)
    import stream.views  # noqa: F401  (registers the agent, the model watcher and the views)
    from stream.app import app, models, users

    # The tables' changelogs are created here, before Faust starts, with the
    # partitions of the events topic: a changelog Faust creates itself can be
    # seen with 0 partitions by its consumer's metadata snapshot, and every
    # table write then fails with PartitionsMismatch until the next rebalance.
    changelogs = [TopicSpec(table.changelog_topic_name, settings.events_partitions,
                            {"cleanup.policy": "compact"}) for table in (users,)]
    ensure_topics(bootstrap, project_topics(settings) + changelogs,
                  replication_factor=settings.replication_factor)
    if not models.load_latest():
        print(f"recsys stream: no model in {settings.model_dir} yet; lists stay empty "
              f"(strategy no_model) until one is announced on {settings.model_updates_topic}",
              file=sys.stderr)
    # One BLAS thread: the fold-in's 64x64 solves are too small to gain from
    # more, and a second thread competes with the event loop (about 10% here).
    threadpool_limits(limits=1)
    # The process allocates millions of short-lived objects a minute; with
    # CPython's default thresholds the cyclic collector took about 6% of the
    # worker's time here and paused it for up to 70 ms (full collections over
    # Faust's and the model's long-lived objects). Those are frozen out of the
    # collector, and young collections run less often.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel,
                "--web-port", str(settings.web_port)]
    app.main()
    return 0
