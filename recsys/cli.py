"""The ``recsys`` command: one entry point, a subcommand per job."""
from __future__ import annotations

import argparse
import os
import sys

from batch import evaluate, produce, retrain, synthetic_file
from recsys import demo, tail
from shared.broker import BrokerError, ensure_broker, local_broker
from shared.config import CONFIG_ENV, ConfigError, Settings, load_settings, read_settings
from shared.topics import ensure_topics, project_topics
from stream import worker

#: Subcommands implemented elsewhere: name -> (module with add_arguments/run, help).
_JOBS = {
    "synthetic": (synthetic_file, "write a synthetic shop's events and ground truth"),
    "produce": (produce, "replay an event file or a synthetic shop into the events topic"),
    "retrain": (retrain, "train ALS on the event log and publish a model version"),
    "evaluate": (evaluate, "evaluate on a data set: original and next-item protocols, report"),
    "demo": (demo, "run the whole system end to end on embedded defaults"),
    "stream": (worker, "run a stream worker (Faust agent, RocksDB tables, web views)"),
    "tail": (tail, "print the recommendations, dead letters or events on their topic"),
}


def _kafka(args, settings: Settings) -> None:
    broker = local_broker(settings)
    print({"start": broker.start, "stop": broker.stop, "status": broker.status}[args.action]())


def _topics(args, settings: Settings) -> None:
    bootstrap = ensure_broker(settings)
    outcome = ensure_topics(bootstrap, project_topics(settings),
                            replication_factor=settings.replication_factor)
    for name, state in outcome.items():
        print(f"{name}: {state}")


def _config(args, settings: Settings) -> None:
    _, sources = read_settings()
    print(f"{'variable':34} {'value':28} {'from':24} meaning")
    for name, env, value, doc in settings.describe():
        print(f"{env:34} {value!s:28} {sources[name]:24} {doc}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="recsys", description=__doc__,
        epilog="Settings come from the defaults, then the configuration file, then the "
               "environment (each over the one before); `recsys config` shows every value "
               "and where it came from.")
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML configuration file (the same as {CONFIG_ENV}=FILE), e.g. "
                             "profiles/paper.toml")
    commands = parser.add_subparsers(dest="command", required=True)
    kafka = commands.add_parser("kafka", help="start, stop or inspect the local Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.set_defaults(handler=_kafka)
    commands.add_parser("topics", help="create the project's topics (idempotent)"
                        ).set_defaults(handler=_topics)
    commands.add_parser("config", help="list every setting: its variable, value, where the "
                                       "value came from, and meaning"
                        ).set_defaults(handler=_config)
    for name, (module, help_text) in _JOBS.items():
        sub = commands.add_parser(name, help=help_text,
                                  description=help_text[0].upper() + help_text[1:] + ".")
        module.add_arguments(sub)
        sub.set_defaults(handler=lambda args, settings, run=module.run: run(args, settings))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``recsys``; configuration and broker problems exit 2 with their message."""
    args = build_parser().parse_args(argv)
    if args.config is not None:  # the worker, its tables and any child process read it too
        os.environ[CONFIG_ENV] = args.config
    try:
        settings = load_settings()
        return args.handler(args, settings) or 0
    except (ConfigError, BrokerError) as exc:
        print(f"recsys {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (`recsys config | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
