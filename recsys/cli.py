"""The ``recsys`` command: one entry point, a subcommand per job."""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import zlib
from pathlib import Path
from typing import NoReturn

from batch import evaluate, produce, retrain, synthetic_file, validate
from batch.readers import FORMATS
from recsys import demo, tail
from shared.broker import ensure_broker, local_broker
from shared.config import CONFIG_ENV, ConfigError, Settings, load_settings, read_settings
from shared.errors import RecsysError
from shared.topics import ensure_topics, project_topics
from stream import worker

#: Subcommands implemented elsewhere: name -> (module with add_arguments/run, help).
_JOBS = {
    "synthetic": (synthetic_file, "write a synthetic shop's events and ground truth"),
    "produce": (produce, "replay an event file or a synthetic shop into the events topic"),
    "validate": (validate, "check an event file against the event contract, one line per bad row"),
    "retrain": (retrain, "train ALS on the event log and publish a model version"),
    "evaluate": (evaluate, "evaluate on a data set: original and next-item protocols, report"),
    "demo": (demo, "run the whole system end to end on embedded defaults"),
    "stream": (worker, "run a stream worker (Faust agent, RocksDB tables, web views)"),
    "tail": (tail, "print the recommendations, dead letters or events on their topic"),
}


#: Errors whose message says what to fix (shared.broker's BrokerError and shared.topics'
#: TopicError among them).
_STATED = (ConfigError, RecsysError)
#: A file named on the command line (or in a setting) that is not there or cannot be read
#: or written: the error names the file and the reason.
_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
#: A compressed input that is not what its name says, or is cut short.
_DAMAGED_INPUT = (gzip.BadGzipFile, EOFError, zlib.error)
#: The options that name the event file a command reads (produce, validate: ``path``;
#: retrain: ``--input``). evaluate checks its own files first.
_INPUT_OPTIONS = ("path", "input")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default where it has one (not None, False or empty),
    and keeps descriptions' own line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default in (None, False, "", argparse.SUPPRESS)
                or not action.option_strings or "default" in text):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``recsys produce: error: ...``, and
    where to look, instead of the usage (which ``--help`` shows) and then the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` shows the "
                     f"options)\n")


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
    parser = _Parser(
        prog="recsys", description=__doc__, formatter_class=_Help,
        epilog="Settings come from the defaults, then the configuration file, then the "
               "environment (each over the one before); `recsys config` shows every value "
               "and where it came from.")
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML configuration file (the same as {CONFIG_ENV}=FILE), e.g. "
                             "profiles/paper.toml")
    commands = parser.add_subparsers(dest="command", required=True)
    kafka = commands.add_parser("kafka", help="start, stop or inspect the local Kafka broker",
                                formatter_class=_Help)
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.set_defaults(handler=_kafka)
    commands.add_parser("topics", help="create the project's topics (idempotent)"
                        ).set_defaults(handler=_topics)
    commands.add_parser("config", help="list every setting: its variable, value, where the "
                                       "value came from, and meaning"
                        ).set_defaults(handler=_config)
    for name, (module, help_text) in _JOBS.items():
        sub = commands.add_parser(name, help=help_text, formatter_class=_Help,
                                  description=help_text[0].upper() + help_text[1:] + ".")
        module.add_arguments(sub)
        sub.set_defaults(handler=lambda args, settings, run=module.run: run(args, settings))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``recsys``.

    A problem the person running it can fix exits with status 2 and one line on
    stderr, ``recsys <command>: <what to fix>``: a setting (:class:`ConfigError`),
    a broker, port or topic (:class:`~shared.errors.RecsysError`), a file that is
    missing, unreadable or a folder, a compressed input that is damaged, and a
    command line the parser refuses. Ctrl-C is one line too, with status 130.
    Anything else is a fault of the program and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    if args.config is not None:  # the worker, its tables and any child process read it too
        os.environ[CONFIG_ENV] = args.config
    try:
        settings = load_settings()
        _check_input_file(args)
        return args.handler(args, settings) or 0
    except _STATED as exc:
        return _fail(args, str(exc))
    except _FILE_ERRORS as exc:
        return _fail(args, f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except _DAMAGED_INPUT as exc:
        named = [str(getattr(args, option)) for option in _INPUT_OPTIONS
                 if getattr(args, option, None) is not None]
        return _fail(args, ": ".join([*named[:1], f"cannot be read: {exc}"]))
    except BrokenPipeError:  # the reader stopped early (`recsys config | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # Ctrl-C: the command's own clean-up (finally blocks) has run
        print(f"recsys {args.command}: interrupted", file=sys.stderr)
        return 130


def _check_input_file(args: argparse.Namespace) -> None:
    """The event file the command reads exists, is a file, can be opened and, compressed,
    starts as gzip data, and its ``--format`` is one the readers know: checked before any
    other work, so that a wrong name is the command's only line, not one after it has
    connected to Kafka or said where it writes. (A file cut short is found where the
    reading ends.)"""
    fmt = getattr(args, "format", None)
    if fmt is not None and fmt not in FORMATS:
        raise RecsysError(f"unknown format {fmt!r}; use one of {sorted(FORMATS)}")
    for option in _INPUT_OPTIONS:
        if getattr(args, option, None) is None:
            continue
        path = Path(getattr(args, option))
        if not path.is_file():
            raise RecsysError(f"no such event file: {path}"
                              + (" (it is a folder)" if path.is_dir() else ""))
        with path.open("rb") as raw:
            if path.suffix == ".gz":
                gzip.GzipFile(fileobj=raw).read(1)


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"recsys {args.command}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
