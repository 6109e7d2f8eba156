"""``recsys stream``: run one worker of the stream app."""
from __future__ import annotations

import errno
import gc
import socket
import sys

from threadpoolctl import threadpool_limits

from shared.broker import ensure_broker
from shared.config import ConfigError
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
    parser.add_argument("--verbose", action="store_true",
                        help="print Faust's startup banner and console messages even when "
                             "standard output is not a terminal (on a terminal they are "
                             "always printed)")


def check_web_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` unless the worker's views could listen on ``host:port``.

    Binds a socket to each of ``host``'s addresses as asyncio's server will
    (``SO_REUSEADDR``, IPv6 sockets IPv6-only) and closes it again, so that a
    port in use is one line before anything starts, instead of Faust's 70-line
    log and traceback as its web server starts. (Another process can still take
    the port in between; then Faust's own error stops the worker.)

    >>> check_web_port("127.0.0.1", 70000)
    Traceback (most recent call last):
    ...
    shared.config.ConfigError: RECSYS_WEB_PORT=70000 is out of range: it must be from 1 to 65535
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"RECSYS_WEB_PORT={port} is out of range: it must be from 1 to 65535")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"RECSYS_WEB_HOST={host!r} is not an address of this machine "
                          f"({exc.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ConfigError(_bind_failure(host, port, exc)) from None


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"web port {port} is in use; set RECSYS_WEB_PORT to a free port"
    if exc.errno == errno.EACCES:
        return (f"web port {port} needs privileges this process does not have; set "
                f"RECSYS_WEB_PORT to a port above 1023")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"RECSYS_WEB_HOST={host!r} is not an address of this machine"
    return f"the worker's views cannot listen on {host}:{port}: {exc.strerror or exc}"


def faust_argv(args, settings, *, terminal: bool) -> list[str]:
    """Faust's command line for the worker (after the program name).

    Faust prints a startup banner (a table of the app's id, transport, store,
    folders and versions) and console messages (its progress spinner, ``-INT-``
    on Ctrl-C) besides its log. On a ``terminal``, or with ``--verbose``, they
    are printed; otherwise ``--quiet`` leaves them out, so that a log file or a
    service's journal holds only log lines (which carry colours only on a
    terminal either way).

    >>> import argparse
    >>> args = argparse.Namespace(loglevel="info", verbose=False)
    >>> settings = argparse.Namespace(web_port=6066)
    >>> faust_argv(args, settings, terminal=False)
    ['--quiet', 'worker', '--loglevel', 'info', '--web-port', '6066']
    >>> faust_argv(args, settings, terminal=True)[0]
    'worker'
    """
    quiet = [] if terminal or args.verbose else ["--quiet"]
    return [*quiet, "worker", "--loglevel", args.loglevel, "--web-port", str(settings.web_port)]


def run(args, settings) -> int:
    """Check the web port, create the topics, load the newest model, and run a worker until
    it is stopped."""
    check_web_port(settings.web_host, settings.web_port)
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
    sys.argv = [sys.argv[0], *faust_argv(args, settings, terminal=_isatty(sys.stdout))]
    app.main()
    return 0


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced, or closed
        return False
