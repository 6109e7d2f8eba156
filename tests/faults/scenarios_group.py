"""Fault scenarios of the group and the broker: a second worker joining and leaving, and the
broker going away under a running worker.

Each takes a :class:`scenarios.Setup` and returns a :class:`scenarios.Result`
(the verdict of :func:`harness.verify` against an uninterrupted run over the
same events, and the figures for ``faults.json``), as :func:`scenarios.kill9`.

(b) :func:`rebalance` replays a live stream through a group that grows from
one worker to two and back: w2 joins while events flow, processes some, and
is stopped with SIGTERM while events still flow. With static membership a
stopped worker does not leave the group, so its partitions stay unserved for
the session timeout (``RECSYS_SESSION_TIMEOUT_S``, 10 s in
:data:`scenarios.WORKER_ENV`) before w1 takes them back. Meanwhile w1 keeps
those partitions' rows in its own RocksDB as a standby (it reads w2's
changelog), and must be at the changelog's end before it applies the next
event there.

(c) :func:`outage` stops the broker for 20 s in the middle of a replay, with
the worker left running, and starts it again on the same port and data. The
worker's producer keeps the lists and rows it could not deliver and retries
them (for up to Faust's producer request timeout, 20 minutes), its first
commit after the stop waits for them, and once the broker answers the
consumer finds the group's coordinator again and goes on from where it was. The
suite's broker is shared by every test, so the scenario runs on a broker of
its own (:func:`shared.broker.ephemeral_broker`: free ports, its storage
deleted afterwards, the jars under ``RECSYS_KAFKA_HOME`` reused).

What holds, in both: every event has a list, no dead letter is written, and
the ``users`` changelog ends with the rows of an uninterrupted run, because
nothing is committed past an event before its list and row are acknowledged
by the broker (``stream/kafka_producer.py``: a commit waits for the producer's
flush), and a worker reading a partition again (w1 after w2, the worker
after the outage) applies nothing twice (``shared.state``: an event already in
the row is read again, not applied).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from harness import Cluster, ListWatcher, Message, event_id, produce, verify, wait_until
from scenarios import REPLAY_TIMEOUT_S, WORKER_ENV, Result, Setup, replay

from shared.broker import broker_ready, ephemeral_broker
from shared.config import load_settings

#: Seconds w1 waits for a stopped w2 before the group gives w2's partitions back to it.
SESSION_TIMEOUT_S = float(WORKER_ENV["RECSYS_SESSION_TIMEOUT_S"])


class PacedSender(threading.Thread):
    """Produces ``messages`` in order to the cluster's events topic at ``rate`` per second.

    ``holds`` are indices where sending stops until the matching event of
    :attr:`releases` is set (one per hold, in order), so that a fault can be
    placed before the messages after a hold for sure. Partitions and offsets are
    filled in as :meth:`harness.Cluster.send` does; :meth:`finish` releases every
    hold, waits for the last delivery and raises what failed.
    """

    def __init__(self, cluster: Cluster, messages: list[Message], *, rate: float,
                 holds: tuple[int, ...] = (), batch: int = 50):
        super().__init__(daemon=True, name="paced-sender")
        self.cluster, self.messages, self.rate, self.batch = cluster, messages, rate, batch
        self.holds = tuple(holds)
        self.releases = [threading.Event() for _ in self.holds]
        self.sent = 0
        self.failed: list = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def _send(self) -> None:
        producer = Producer({"bootstrap.servers": self.cluster.bootstrap, "linger.ms": 5,
                             "enable.idempotence": True})
        topic = self.cluster.topics["events"]

        def delivered(message, err, record):
            if err is not None:
                self.failed.append(err)
            else:
                message.partition, message.offset = record.partition(), record.offset()

        bounds = (0, *self.holds, len(self.messages))
        for segment, (first, last) in enumerate(zip(bounds, bounds[1:])):
            if segment:
                while not self.releases[segment - 1].wait(0.05):
                    producer.poll(0)
            started = time.monotonic()
            for index in range(first, last, self.batch):
                for message in self.messages[index:min(index + self.batch, last)]:
                    produce(producer, topic, message, delivered)
                self.sent = min(index + self.batch, last)
                due = started + (self.sent - first) / self.rate
                while (left := due - time.monotonic()) > 0:
                    producer.poll(min(left, 0.05))  # returns early when it served a delivery
        if producer.flush(60) != 0:
            self.failed.append("messages left undelivered after 60 s")

    def finish(self, timeout_s: float = REPLAY_TIMEOUT_S) -> None:
        for release in self.releases:
            release.set()
        self.join(timeout_s)
        assert not self.is_alive(), f"sender still running after {timeout_s} s ({self.sent} sent)"
        if self.error is not None:
            raise self.error
        assert not self.failed, self.failed[:5]


def group_assignment(admin: AdminClient, cluster: Cluster) -> tuple[str, dict[str, list[int]]]:
    """The state of the cluster's consumer group and the events partitions of each worker.

    Workers are named as the cluster names them (``w1``), from their static
    ``group.instance.id`` (``<app id>-<worker id>``, :mod:`stream.membership`).
    """
    group = cluster.run
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except KafkaException:
        return "UNKNOWN", {}
    topic = cluster.topics["events"]
    members = {}
    for member in description.members:
        name = (member.group_instance_id or member.member_id).removeprefix(f"{group}-")
        members[name] = sorted(tp.partition for tp in member.assignment.topic_partitions
                               if tp.topic == topic)
    return description.state.name, members


def worker_metrics(cluster: Cluster, name: str) -> dict:
    """Worker ``name``'s /metrics.json view ({} when it does not answer)."""
    status, body = cluster.get(name, "/metrics.json")
    return body if status == 200 else {}


def events_seen(metrics: dict) -> int:
    """Events a worker has handled, all outcomes together, by its /metrics.json view."""
    return sum((metrics.get("events") or {}).values())


def read_again(metrics: dict) -> int:
    """Events a worker found already applied to their rows (handled before, not committed)."""
    return (metrics.get("incidents") or {}).get("read_again", 0)


def partitions_read(metrics: dict, topic: str) -> list[int]:
    """Partitions of ``topic`` a worker holds and has read events of, by its /metrics.json view."""
    return sorted(int(key.rsplit("/", 1)[1]) for key in (metrics.get("consumer_lag") or {})
                  if key.rsplit("/", 1)[0] == topic)


def rebalance(setup: Setup, *, n_events: int = 30_000, seed: int = 7,
              rate: float = 1000.0, w2_events: int = 1000) -> Result:
    """(b) w1 replays; at a third of the lists w2 joins while events flow; once w2 has
    applied ``w2_events`` events no worker had applied before (those it reads again
    after w1's last commit do not count) and two thirds of the events have lists, w2
    gets SIGTERM while events still flow, and w1 takes its partitions back after the
    session timeout.

    The first third is sent before w1 starts. From w2's start on the rest is sent at
    ``rate`` events per second in three parts: up to half of the events (flowing
    while w2 joins), then, once the group is stable with partitions of its own for
    w2, up to five sixths, and the last sixth only after w2's SIGTERM, so that events
    of w2's partitions arrive while nobody serves them and w1 must take them over.

    Figures: ``w2_partitions`` is w2's part of the events topic, by the group's
    assignment just before its SIGTERM; ``handover_s`` the time from w2's SIGTERM to
    the first list w1 made for an event of one of those partitions (w1 is the only
    worker left once w2 has exited, so any list made after w2's exit is w1's), and
    ``reassigned_s`` to the group being stable with every partition on w1;
    ``replay_done_s`` is from w2's SIGTERM to the last event's first list.
    ``events_w2`` is w2's /metrics.json event count read just before its SIGTERM (a lower
    bound), ``events_w1`` w1's at the end, and ``read_again_*`` how many of those
    each found already applied to their rows: events handled before a rebalance and
    not committed yet, which at-least-once delivery reads again by design.
    """
    cluster = setup.cluster("rebalance")
    messages = replay(n_events, seed)
    third = n_events // 3
    cluster.send(messages[:third])
    event_ids = {event_id(m) for m in messages}
    watcher = ListWatcher(cluster)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    sender = PacedSender(cluster, messages[third:], rate=rate,
                         holds=(n_events // 2 - third, n_events * 5 // 6 - third))
    joined, stopping = sender.releases
    began = time.monotonic()
    try:
        cluster.start("w1")
        w1_alive = lambda: cluster.alive("w1")  # noqa: E731
        both_alive = lambda: cluster.alive("w1") and cluster.alive("w2")  # noqa: E731
        watcher.wait_for(lambda w: len(w.counts) >= third, REPLAY_TIMEOUT_S,
                         alive=w1_alive, what=f"lists of {third} events")
        cluster.start("w2")
        w2_started = time.monotonic()
        sender.start()
        group = {}

        def w2_assigned() -> bool:
            state, members = group_assignment(admin, cluster)
            group.update(state=state, members=members)
            return state == "STABLE" and bool(members.get("w2"))

        wait_until(w2_assigned, REPLAY_TIMEOUT_S, "the group to give w2 partitions",
              watcher=watcher, alive=both_alive, detail=lambda: f"group: {group}")
        join_s = time.monotonic() - w2_started
        joined.set()
        w2 = {}

        def w2_has_worked() -> bool:
            w2.update(worker_metrics(cluster, "w2"))
            fresh = events_seen(w2) - read_again(w2)
            return fresh >= w2_events and len(watcher.counts) >= 2 * third

        wait_until(w2_has_worked, REPLAY_TIMEOUT_S,
              f"w2 to apply {w2_events} new events and lists of 2/3 of the events",
              watcher=watcher, alive=both_alive,
              detail=lambda: f"{len(watcher.counts)} events listed, {sender.sent} sent; w2: "
                             f"{ {k: w2.get(k) for k in ('events', 'incidents', 'consumer_lag')} }")
        w2_working_s = time.monotonic() - w2_started
        w2 = worker_metrics(cluster, "w2") or w2
        state, members = group_assignment(admin, cluster)
        assert state == "STABLE" and members.get("w2"), (state, members)
        w2_partitions = members["w2"]
        sigterm = time.time()
        stopping.set()
        w2_status = cluster.stop("w2")
        w2_exit = time.time()
        reassigned = None

        def replay_done() -> bool:
            nonlocal reassigned
            if reassigned is None:
                state, members = group_assignment(admin, cluster)
                if state == "STABLE" and members.get("w1") == list(range(8)):
                    reassigned = time.time()
            return event_ids <= watcher.counts.keys() and not sender.is_alive()

        wait_until(replay_done, REPLAY_TIMEOUT_S, "the replay's lists", watcher=watcher,
              alive=w1_alive, every_s=0.2,
              detail=lambda: f"{len(event_ids - watcher.counts.keys())} events without a list")
        sender.finish()
        done = max(watcher.first_at.values())
        w1 = worker_metrics(cluster, "w1")
        w1_status = cluster.stop("w1")
        verdict = verify(cluster, messages, watcher, setup.rule(cluster))
    finally:
        for release in sender.releases:
            release.set()
        watcher.close()
        cluster.close()
    w2_ids = {event_id(m) for m in messages if m.partition in w2_partitions}
    taken_over = [at for e, at in watcher.first_at.items() if e in w2_ids and at > w2_exit]
    handover = min(taken_over) - sigterm if taken_over else None
    return Result("rebalance", verdict, {
        "workers_max": 2, "partitions": 8, "users": len({m.key for m in messages}),
        "session_timeout_s": SESSION_TIMEOUT_S, "rate_eps": rate,
        "w2_join_s": round(join_s, 2), "w2_working_s": round(w2_working_s, 2),
        "w2_partitions": w2_partitions,
        "events_w1": events_seen(w1), "events_w2": events_seen(w2),
        "read_again_w1": read_again(w1), "read_again_w2": read_again(w2),
        "events_w1_partitions": partitions_read(w1, cluster.topics["events"]),
        "handover_s": None if handover is None else round(handover, 2),
        "handover_measured": "SIGTERM of w2 to w1's first list on a partition w2 held",
        "reassigned_s": None if reassigned is None else round(reassigned - sigterm, 2),
        "w2_stop_s": round(w2_exit - sigterm, 2),
        "replay_done_s": round(done - sigterm, 2),
        "duplicate_lists": verdict.duplicate_lists,
        "exit_status_w1": w1_status, "exit_status_w2": w2_status,
        "exit_status": w1_status or w2_status,
        "duration_s": round(time.monotonic() - began, 1)})


def outage(setup: Setup, *, n_events: int = 30_000, seed: int = 9,
           down_s: float = 20.0) -> Result:
    """(c) the broker stopped for ``down_s`` in the middle of a replay and started again
    (same port, same data), the worker running throughout.

    All events are sent before the worker starts; the broker is stopped once half of
    the lists are out. Figures: ``outage_s`` is measured from the stop request to the
    broker answering a metadata request again, ``broker_down_s`` from the broker's
    process having exited to its restart; ``recovery_s`` from the broker answering
    again to the first list the worker made after that; ``lists_at_stop`` is how many
    events had lists when the stop was requested, ``lists_made_while_down`` how
    many events got their first list from the worker between the broker's exit and
    its answering again (from records fetched before the stop, held by the producer
    until the broker was back: the worker stalls only once a commit waits for them),
    ``lists_made_after_restart`` how many after that.
    """
    home = Path(load_settings().kafka_home).expanduser()
    began = time.monotonic()
    with ephemeral_broker(home) as broker:
        broker_start_s = time.monotonic() - began
        own = Setup(broker.bootstrap, setup.model_path, setup.model, setup.tmp, broker)
        cluster = own.cluster("outage")
        messages = replay(n_events, seed)
        cluster.send(messages)
        event_ids = {event_id(m) for m in messages}
        watcher = ListWatcher(cluster)
        try:
            cluster.start()
            alive = lambda: cluster.alive()  # noqa: E731
            watcher.wait_for(lambda w: len(w.counts) >= n_events // 2, REPLAY_TIMEOUT_S,
                             alive=alive, what=f"lists of {n_events // 2} events")
            lists_at_stop = len(watcher.counts)
            stop_requested = time.time()
            broker.stop()
            stopped = time.time()
            wait_until(lambda: time.time() - stopped >= down_s, down_s + 5, "the outage",
                  alive=alive, every_s=0.5)
            assert not broker_ready(broker.bootstrap, timeout_s=0.5), "broker still answers"
            restarted = time.time()
            broker.start()
            ready = time.time()
            assert cluster.alive(), f"the worker exited during the outage:\n{cluster.tail()}"
            watcher.wait_for(lambda w: w.first_after(ready) is not None, REPLAY_TIMEOUT_S,
                             alive=alive, what="a list after the broker came back")
            recovery = watcher.first_after(ready)
            watcher.wait_for(lambda w: event_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                             alive=alive, what="the replay's lists")
            done = max(watcher.first_at.values())
            metrics = worker_metrics(cluster, "w1")
            status = cluster.stop()
            verdict = verify(cluster, messages, watcher, own.rule(cluster))
        finally:
            watcher.close()
            cluster.close()
    made_down = sum(1 for at in watcher.first_at.values() if stopped <= at < ready)
    made_after = sum(1 for at in watcher.first_at.values() if at >= ready)
    return Result("outage", verdict, {
        "partitions": 8, "users": len({m.key for m in messages}),
        "outage_s": round(ready - stop_requested, 2),
        "broker_down_s": round(restarted - stopped, 2),
        "broker_stop_s": round(stopped - stop_requested, 2),
        "broker_restart_s": round(ready - restarted, 2),
        "recovery_s": round(recovery, 2),
        "lists_at_stop": lists_at_stop,
        "lists_made_while_down": made_down,
        "lists_made_after_restart": made_after,
        "replay_done_after_restart_s": round(done - ready, 2),
        "send_failed": (metrics.get("incidents") or {}).get("send_failed", 0),
        "duplicate_lists": verdict.duplicate_lists,
        "exit_status": status,
        "broker_start_s": round(broker_start_s, 1),
        "duration_s": round(time.monotonic() - began, 1)})
