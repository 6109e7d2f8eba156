"""What the command line says when the world is not as it expects, without a broker: one
line on stderr, exit status 2, at once.

An unreachable broker is a port nothing listens on, named by ``KAFKA_BOOTSTRAP`` (so
no local broker is started); the commands run as the ``recsys`` program does, in a
process of their own, and must give up within 10 s.
"""
from __future__ import annotations

import gzip
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from recsys import cli
from shared import kafka_log
from shared.broker import BrokerError, require_broker
from shared.config import ConfigError
from stream.worker import check_web_port

ROOT = Path(__file__).resolve().parents[2]
#: How long an unreachable broker may take to be reported, start of the interpreter included.
REPORT_WITHIN_S = 10.0


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without its Kafka and RECSYS settings, with stores
    under ``tmp_path`` and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECSYS_") and k != "KAFKA_BOOTSTRAP"}
    return {**env, "RECSYS_MODEL_DIR": str(tmp_path / "models"),
            "RECSYS_TABLE_DIR": str(tmp_path / "tables"), **extra}


def _recsys(env: dict[str, str], *argv: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "recsys", *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - started


@pytest.fixture
def nowhere(free_port) -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("argv", [["produce", "--synthetic", "10"], ["topics"], ["stream"],
                                  ["retrain"], ["tail", "events"]])
def test_an_unreachable_broker_is_one_line_naming_it_within_10_s(argv, nowhere, tmp_path):
    result, took = _recsys(_env(tmp_path, KAFKA_BOOTSTRAP=nowhere), *argv)
    assert result.returncode == 2, result.stderr
    assert took < REPORT_WITHIN_S
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"recsys {argv[0]}: no Kafka broker answers at {nowhere}: "
                               "connection refused; "), lines[0]
    assert "KAFKA_BOOTSTRAP" in lines[0] and "`recsys kafka status`" in lines[0]
    assert result.stdout == ""


def test_a_listener_that_does_not_speak_kafka_is_reported_after_the_metadata_timeout():
    with socket.socket() as server:  # accepts connections (the kernel's backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BrokerError) as error:
            require_broker(address, metadata_timeout_s=1.0)
    assert time.monotonic() - started < 5.0
    message = str(error.value)
    assert message.startswith(f"no Kafka broker answers at {address}: ") and "\n" not in message


def test_an_unresolvable_host_is_named():
    with pytest.raises(BrokerError, match="cannot resolve 'no-such-host.invalid'"):
        require_broker("no-such-host.invalid:9092")


def test_a_busy_web_port_is_one_line_before_faust_starts(nowhere, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, _ = _recsys(_env(tmp_path, KAFKA_BOOTSTRAP=nowhere, RECSYS_WEB_PORT=str(port)),
                            "stream")
    assert (result.returncode, result.stderr) == (
        2, f"recsys stream: web port {port} is in use; set RECSYS_WEB_PORT to a free port\n")


@pytest.mark.parametrize("port", [0, 70000])
def test_a_web_port_out_of_range_is_refused(port):
    with pytest.raises(ConfigError, match=f"RECSYS_WEB_PORT={port} is out of range"):
        check_web_port("127.0.0.1", port)


def test_a_free_web_port_passes(free_port):
    check_web_port("127.0.0.1", free_port())


def test_a_missing_file_for_produce_is_one_line_before_any_broker(nowhere, tmp_path):
    missing = tmp_path / "absent.jsonl"
    result, _ = _recsys(_env(tmp_path, KAFKA_BOOTSTRAP=nowhere), "produce", str(missing))
    assert (result.returncode, result.stderr) == (
        2, f"recsys produce: no such event file: {missing}\n")


def _inputs(tmp_path: Path) -> dict[str, str]:
    """Files by the names the cases below use for them."""
    (tmp_path / "not-gzip.jsonl.gz").write_bytes(b"plain text, not gzip\n")
    (tmp_path / "events.jsonl").write_text("{}\n")
    (tmp_path / "folder").mkdir()
    return {name: str(tmp_path / file) for name, file in [
        ("absent", "absent.jsonl"), ("not_gzip", "not-gzip.jsonl.gz"),
        ("events", "events.jsonl"), ("folder", "folder")]}


@pytest.mark.parametrize(("argv", "says"), [
    (["produce", "absent"], "recsys produce: no such event file: {absent}"),
    (["produce", "folder"], "recsys produce: no such event file: {folder} (it is a folder)"),
    (["produce", "not_gzip"],
     "recsys produce: {not_gzip}: cannot be read: Not a gzipped file (b'pl')"),
    (["retrain", "--input", "absent"], "recsys retrain: no such event file: {absent}"),
    (["retrain", "--input", "folder"],
     "recsys retrain: no such event file: {folder} (it is a folder)"),
    (["retrain", "--input", "events", "--format", "csv"],
     "recsys retrain: unknown format 'csv'; use one of ['jsonl', "),
    (["validate", "not_gzip"],
     "recsys validate: {not_gzip}: cannot be read: Not a gzipped file (b'pl')"),
    (["evaluate", "--train", "absent", "--test", "events", "--report", "folder"],
     "recsys evaluate: --train {absent}: no such file"),
])
def test_a_file_that_cannot_be_read_is_one_line(argv, says, tmp_path, capsys, monkeypatch,
                                                nowhere):
    """Before any other work: retrain --input says nothing about the store it would write
    to, produce does not connect (the broker named here is not there)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", nowhere)
    monkeypatch.setenv("RECSYS_MODEL_DIR", str(tmp_path / "models"))
    paths = _inputs(tmp_path)
    assert cli.main([paths.get(arg, arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(says.format_map(paths)), err


def test_an_option_the_parser_refuses_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["produce", "events.jsonl", "--format", "csv"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("recsys produce: error: argument --format: invalid choice: 'csv'")
    assert err.rstrip().endswith("(`recsys produce --help` shows the options)")


def test_a_program_fault_keeps_its_traceback(monkeypatch):
    def broken(args, settings):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_topics", broken)
    with pytest.raises(KeyError):
        cli.main(["topics"])


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(args, settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_topics", interrupted)
    assert cli.main(["topics"]) == 130
    assert capsys.readouterr().err == "recsys topics: interrupted\n"


def test_librdkafka_repeating_a_failed_connection_is_one_log_line(nowhere, caplog):
    """A client retrying an address that refuses it logs each attempt (about 20 a second);
    through shared.kafka_log they are one record."""
    caplog.set_level(logging.DEBUG, logger=kafka_log.LOGGER_NAME)
    admin = AdminClient({"bootstrap.servers": nowhere, **kafka_log.client_config()})
    with pytest.raises(Exception):  # noqa: B017  (KafkaException: the transport failed)
        admin.list_topics(timeout=1.5)
    admin.poll(0)
    failed = [r for r in caplog.records if "Connect to" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR, [r.getMessage() for r in failed]


def test_once_per_lets_a_line_through_again_after_the_interval_with_the_count():
    now = [0.0]
    once = kafka_log.OncePer(30.0, clock=lambda: now[0])
    logger = logging.getLogger("test.kafka_log.once_per")
    records = [logger.makeRecord(logger.name, logging.ERROR, "", 0, "%s [%s] %s",
                                 ("FAIL", "rdkafka#producer-1",
                                  f"Connect to ipv4#127.0.0.1:1 failed (after {ms}ms)"), None)
               for ms in range(580)]
    passed = []
    for k, record in enumerate(records):
        now[0] = k * 0.05
        if once.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 1  # 580 lines over 29 s
    now[0] = 31.0
    later = logger.makeRecord(logger.name, logging.ERROR, "", 0, "other line", None, None)
    again = records[0]
    assert once.filter(later) and once.filter(again)
    assert again.getMessage().endswith("(579 more like it in 31 s)")


def test_the_check_reads_a_compressed_file_header_only(tmp_path, capsys, monkeypatch, nowhere):
    """A valid .gz passes the check; the command then goes on (here to the broker)."""
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b"{}\n"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", nowhere)
    assert cli.main(["produce", str(path)]) == 2
    assert f"no Kafka broker answers at {nowhere}" in capsys.readouterr().err


def test_help_shows_the_options_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "(default: 50000)" in out and "(default: 500.0)" in out
    assert "(default: None)" not in out and "(default: False)" not in out
