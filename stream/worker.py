"""``recsys stream``: run one worker of the stream app."""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    """Options of ``recsys stream``."""
    parser.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])


def run(args, settings) -> int:
    """Start a worker on ``settings``; returns when it stops."""
    from shared.cli import ensure_broker
    from shared.topics import ensure_topics, project_topics

    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, project_topics(settings), replication_factor=settings.replication_factor)
    import stream.views  # noqa: F401  (registers the agent, the model watcher and the views)
    from stream.app import app, models

    if not models.load_latest():
        print(f"recsys stream: no model in {settings.model_dir} yet; lists stay empty "
              f"(strategy no_model) until one is announced on {settings.model_updates_topic}",
              file=sys.stderr)

    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel, "--web-port", str(settings.web_port)]
    app.main()
    return 0
