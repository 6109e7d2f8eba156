"""The command line against the real broker: a worker's output off a terminal is plain log
lines, and a topic the broker refuses is one line."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

from recsys import cli
from worker_process import WorkerProcess


def test_a_worker_off_a_terminal_prints_no_banner_and_no_escape_codes(kafka_bootstrap, tmp_path,
                                                                       free_port):
    worker = WorkerProcess(kafka_bootstrap, tmp_path, free_port())  # stdout: a log file
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # the views answer (503 without a model) once the worker has started
            assert worker.process.poll() is None, worker.log.read_text()[-3000:]
            assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/health/", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
    finally:
        worker.close()
    text = worker.log.read_text()
    lines = text.splitlines()
    assert "\x1b" not in text
    assert "ƒaµS†" not in text and not any(line.startswith("| id ") for line in lines)
    # The first lines: the worker's own notice (no model yet), then Faust's log lines.
    assert lines[0].startswith("recsys stream: no model in "), lines[:3]
    assert len(lines) > 6 and all(line.startswith("[") for line in lines[1:6]), lines[:6]


def test_a_topic_the_broker_refuses_is_one_line(kafka_bootstrap, monkeypatch, capsys):
    run = f"refused-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("RECSYS_REPLICATION_FACTOR", "2")  # one broker
    for setting, kind in [("EVENTS", "events"), ("RECOMMENDATIONS", "recs"), ("DLQ", "dlq"),
                          ("MODEL_UPDATES", "models")]:
        monkeypatch.setenv(f"RECSYS_{setting}_TOPIC", f"{run}-{kind}")
    assert cli.main(["topics"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"recsys topics: cannot create topic '{run}-") and "replication" in err
    assert err.rstrip().endswith("(RECSYS_REPLICATION_FACTOR sets it)")
