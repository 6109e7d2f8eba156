"""Real worker processes on a real broker, faults done to them, and one verifier.

A :class:`Cluster` is one deployment on topics of its own: the events and
recommendations topics with ``PARTITIONS`` partitions, a model store, and
any number of ``recsys stream`` worker processes in one consumer group, each
with its own tables and web port. Faults are real: ``SIGKILL`` of a worker,
a second worker joining and leaving, the broker stopped and started.

:func:`verify` is the shape of Kafka Streams' exactly-once test driver: it
reads everything the deployment wrote (the recommendations topic, the
dead-letter topic, the tables' changelogs) and compares it with what an
uninterrupted run over the same events must give: every valid event has at
least one list, every bad one a dead letter with its code, every copy of an
applied event no effect, and the final ``users`` rows equal
to the event-to-state rule folded over the events in partition order
(:func:`expected_rows`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from shared.broker import free_port
from topic_reader import read_all
from shared.topics import TopicSpec, ensure_topics
from stream.worker import own_topics_env

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 8


@dataclass
class Message:
    """One message as produced: key, value, and (once sent) where it landed."""

    key: bytes | None
    value: bytes
    partition: int = -1
    offset: int = -1


class Cluster:
    """Workers of one app id on topics of their own under ``tmp`` (module docstring).

    ``env`` adds ``RECSYS_*`` settings for every worker.
    """

    def __init__(self, bootstrap: str, tmp: Path, env: dict[str, str] | None = None):
        self.bootstrap, self.tmp = bootstrap, tmp
        self.run = f"f-{uuid.uuid4().hex[:8]}"
        self.topics = {kind: f"{self.run}-{kind}" for kind in ("events", "recs", "dlq", "models")}
        self.store = tmp / "models"
        self.store.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.workers: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.started_at: dict[str, float] = {}
        ensure_topics(bootstrap, [TopicSpec(self.topics["events"], PARTITIONS, {}),
                                  TopicSpec(self.topics["recs"], PARTITIONS, {})])

    # --- workers --------------------------------------------------------------
    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start(self, name: str = "w1", launcher: Path | None = None) -> subprocess.Popen:
        """Start (or restart) worker ``name``; its tables and port stay its own across restarts.

        ``launcher``: a script run instead of ``python -m recsys`` with the same
        arguments (one that injects a fault, then runs the command line).
        """
        port = self.ports.setdefault(name, free_port())
        env = {**os.environ, **own_topics_env(
            self.run, bootstrap=self.bootstrap, model_dir=self.store,
            table_dir=self.tmp / f"tables-{name}", web_port=port, partitions=PARTITIONS),
            "RECSYS_WORKER_ID": name, **self.env}
        with self.log(name).open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
            process = subprocess.Popen(
                [sys.executable, *([str(launcher)] if launcher else ["-m", "recsys"]),
                 "stream", "--loglevel", "info"], env=env,
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.workers[name], self.started_at[name] = process, time.monotonic()
        return process

    def kill(self, name: str = "w1") -> None:
        """``kill -9`` worker ``name``: no shutdown, no commit, no flush."""
        process = self.workers[name]
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self, name: str = "w1", timeout_s: float = 60.0) -> int:
        """SIGTERM worker ``name`` and wait for it; returns its exit status."""
        process = self.workers[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError(f"worker {name} did not stop within {timeout_s} s:\n"
                                     f"{self.tail(name)}") from None
        return process.returncode

    def alive(self, name: str = "w1") -> bool:
        return self.workers[name].poll() is None

    def tail(self, name: str = "w1", chars: int = 4000) -> str:
        return self.log(name).read_text(errors="replace")[-chars:]

    def get(self, name: str, path: str) -> tuple[int, dict]:
        """(status, JSON body) of one of worker ``name``'s HTTP views; (0, {}) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}{path}",
                                        timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except OSError:
            return 0, {}

    def close(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait(30)

    # --- topics -----------------------------------------------------------------
    def send(self, messages: list[Message]) -> None:
        """Produce ``messages`` in order to the events topic; fills in partition and offset."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                             "enable.idempotence": True})
        failed = []

        def delivered(message, err, record):
            if err is not None:
                failed.append(err)
            else:
                message.partition, message.offset = record.partition(), record.offset()

        topic = self.topics["events"]
        for message in messages:
            produce(producer, topic, message, delivered)
        assert producer.flush(60) == 0 and not failed, failed

    def changelog(self, table: str) -> str:
        return f"{self.run}-{table}-changelog"

    def read_all(self, topic: str, timeout_s: float = 30.0) -> list:
        """Every message now in ``topic``, partition by partition, in offset order."""
        return read_all(self.bootstrap, topic, timeout_s)


def event_id(message: Message) -> str:
    """The ``event_id`` of a valid event message."""
    return json.loads(message.value)["event_id"]


def wait_until(predicate, timeout_s: float, what: str, *, alive=None, watcher=None,
               every_s: float = 0.2, detail=lambda: ""):
    """Poll ``predicate()`` until it is true and return its value, reading ``watcher``'s lists
    meanwhile; fails after ``timeout_s``, or when ``alive()`` turns false (``detail()`` is
    added to the failure's message)."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert alive is None or alive(), f"a process ended while waiting for {what}; {detail()}"
        assert time.monotonic() < deadline, \
            f"timed out after {timeout_s:g} s waiting for {what}; {detail()}"
        if watcher is not None:
            watcher.poll(every_s)
        else:
            time.sleep(every_s)
    return value


def produce(producer: Producer, topic: str, message: Message, delivered) -> None:
    """Hand ``message`` to ``producer`` (waiting while its queue is full);
    ``delivered(message, err, record)`` is called on its delivery report."""
    while True:
        try:
            producer.produce(topic, key=message.key, value=message.value,
                             on_delivery=lambda e, r, m=message: delivered(m, e, r))
            return
        except BufferError:
            producer.poll(0.05)


class ListWatcher:
    """Follows the recommendations topic from its beginning: which event ids got lists, when."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        topic = cluster.topics["recs"]
        self.consumer = Consumer({"bootstrap.servers": cluster.bootstrap,
                                  "group.id": f"l-{uuid.uuid4().hex}", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.counts: Counter = Counter()
        #: When each list was produced (its message timestamp), epoch seconds.
        self.arrivals: list[float] = []
        #: When each event's first list was produced, epoch seconds.
        self.first_at: dict[str, float] = {}
        self.versions: Counter = Counter()

    def poll(self, timeout_s: float = 0.2) -> int:
        """Read what has arrived; returns how many lists that was."""
        got = 0
        for record in self.consumer.consume(2000, timeout=timeout_s):
            if record.error() is None:
                body = json.loads(record.value())
                at = record.timestamp()[1] / 1000.0
                self.counts[body["event_id"]] += 1
                self.versions[body["model_version"]] += 1
                self.arrivals.append(at)
                self.first_at.setdefault(body["event_id"], at)
                got += 1
        return got

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def wait_for(self, predicate, timeout_s: float, *, alive=None, what: str = "lists") -> None:
        """Poll until ``predicate(self)``; fails after ``timeout_s`` or when ``alive()`` is false."""
        wait_until(lambda: predicate(self), timeout_s, what, alive=alive, watcher=self,
                   detail=lambda: f"{self.total} lists, {len(self.counts)} event ids")

    def first_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` (epoch seconds) to the first list produced after it."""
        later = [t for t in self.arrivals if t > moment]
        return min(later) - moment if later else None

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Verdict:
    """What one faulted run produced, compared with an uninterrupted run over the same events."""

    events: int
    lost: list[str] = field(default_factory=list)
    duplicate_lists: int = 0
    listed_copies: list[str] = field(default_factory=list)
    dead_letters: Counter = field(default_factory=Counter)
    wrong_dead_letters: list = field(default_factory=list)
    rows_missing: dict = field(default_factory=dict)
    rows_differing: dict = field(default_factory=dict)
    rows_extra: dict = field(default_factory=dict)

    @property
    def state_equal(self) -> bool:
        return not (self.rows_missing or self.rows_differing or self.rows_extra)

    @property
    def exact(self) -> bool:
        """Rows equal, every valid event listed, every bad one with its code, no copy listed."""
        return self.state_equal and not (self.lost or self.wrong_dead_letters
                                         or self.listed_copies)

    def summary(self) -> dict:
        return {"events": self.events, "lost": len(self.lost),
                "duplicate_lists": self.duplicate_lists, "state_equal": self.state_equal}

    def problems(self) -> str:
        """One paragraph per kind of difference (empty when the run is exact)."""
        parts = []
        if self.lost:
            parts.append(f"{len(self.lost)} events without a list, e.g. {self.lost[:5]}")
        if self.listed_copies:
            parts.append(f"{len(self.listed_copies)} copies got lists, e.g. {self.listed_copies[:5]}")
        if self.wrong_dead_letters:
            parts.append(f"{len(self.wrong_dead_letters)} dead letters differ, e.g. "
                         f"{self.wrong_dead_letters[:5]}")
        for name in ("rows_missing", "rows_differing", "rows_extra"):
            rows = getattr(self, name)
            if rows:
                parts.append(f"{name}: {len(rows)}, e.g. {list(rows.items())[:2]}")
        return "\n".join(parts)


def expected_rows(messages: list[Message], rule, *, skip: set = frozenset()):
    """The ``users`` rows (stored bytes, by key) of an uninterrupted run.

    Folds :func:`shared.state.apply_event`, the worker's rule, over the valid
    events partition by partition in offset order, as one worker reading each
    partition from its beginning applies them; the messages at the indices in
    ``skip`` (second copies) are left out, so a copy that changed a row shows.
    """
    from shared.events import EventError, check_key, parse_event
    from shared.state import apply_event, encode_user

    users = {}
    kept = [m for i, m in enumerate(messages) if i not in skip]
    for message in sorted(kept, key=lambda m: (m.partition, m.offset)):
        try:
            event = parse_event(message.value)
            check_key(event, message.key)
        except EventError:
            continue
        key = event.user_id.encode()
        state = apply_event(event, users.get(key), rule, partition=message.partition,
                            offset=message.offset)
        if state is not None:
            users[key] = state
    return {k: encode_user(v) for k, v in users.items()}


def verify(cluster: Cluster, messages: list[Message], watcher: ListWatcher, rule, *,
           expected_codes: dict[int, str] | None = None,
           copies: set[int] = frozenset()) -> Verdict:
    """Compare what ``cluster`` wrote with an uninterrupted run over ``messages``.

    ``expected_codes`` maps the index of each bad message to the dead-letter
    code it must get; ``copies`` holds the indices of second copies of valid
    events (no list of their own, no effect on the rows). Run it once every
    worker has stopped.
    """
    expected_codes = expected_codes or {}
    watcher.poll(1.0)
    verdict = Verdict(events=len(messages))
    listed = watcher.counts
    originals = set()
    for index, message in enumerate(messages):
        if index in expected_codes:
            continue
        if index in copies:
            continue
        listed_id = event_id(message)
        originals.add(listed_id)
        if listed[listed_id] == 0:
            verdict.lost.append(listed_id)
    verdict.duplicate_lists = sum(n - 1 for n in listed.values() if n > 1)
    verdict.listed_copies = [e for e in listed if e not in originals]
    # Dead letters: by source position, the code each bad message must have.
    by_position = {(m.partition, m.offset): i for i, m in enumerate(messages)}
    seen_bad = {}
    for record in cluster.read_all(cluster.topics["dlq"]):
        letter = json.loads(record.value())
        index = by_position.get((letter["source_partition"], letter["source_offset"]))
        code = letter["error_code"]
        verdict.dead_letters[code] += 1
        seen_bad.setdefault(index, code)
    for index, code in expected_codes.items():
        if seen_bad.get(index) != code:
            verdict.wrong_dead_letters.append((index, code, seen_bad.get(index)))
    for index in set(seen_bad) - set(expected_codes):
        verdict.wrong_dead_letters.append((index, None, seen_bad[index]))
    # Rows: the changelogs' latest value per key against the uninterrupted fold.
    for table, want in (("users", expected_rows(messages, rule, skip=copies)),):
        got = {}
        for record in cluster.read_all(cluster.changelog(table)):
            got[record.key()] = record.value()
        for key, value in want.items():
            if key not in got:
                verdict.rows_missing[(table, key)] = value[:200]
            elif got[key] != value:
                verdict.rows_differing[(table, key)] = (got[key][:200], value[:200])
        for key in set(got) - set(want):
            verdict.rows_extra[(table, key)] = got[key][:200]
    return verdict
