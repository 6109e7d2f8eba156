"""The fault scenarios: each replays events through real workers, does its fault, and verifies.

Every scenario takes a :class:`Setup` (the broker, a trained model and a
place for files) and returns a :class:`Result`: the verdict of
:func:`harness.verify` against an uninterrupted run, and the figures that
``benchmarks/results/faults.json`` records. The tests in ``test_faults.py``
assert on them; ``benchmarks/faults.py`` runs them all and writes the file.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import Cluster, ListWatcher, Message, Verdict, event_id, verify

from batch.produce import synthetic_events
from batch.synthetic import ShopParams, generate_columns
from shared.config import load_settings
from shared.model import Model
from shared.signals import SignalWeights
from shared.state import StateRule

#: The shop every scenario replays: 8 partitions' worth of users, a day of visits.
SHOP = ShopParams(n_items=400, n_categories=8, anonymous_share=0.3, n_users=1200, days=1.0)
#: Worker settings of every scenario: a short session timeout so that a worker
#: that left for good is replaced quickly, and a quick model poll.
WORKER_ENV = {"RECSYS_SESSION_TIMEOUT_S": "10", "RECSYS_MODEL_POLL_S": "0.2"}
#: Longest wait for a replay to finish.
REPLAY_TIMEOUT_S = 240.0


@dataclass
class Setup:
    """What every scenario shares: the broker, a model version, scratch space."""

    bootstrap: str
    model_path: Path
    model: Model
    tmp: Path
    broker: object = None  # the shared.broker.LocalBroker, when the suite started it

    def cluster(self, name: str, env: dict | None = None) -> Cluster:
        """A deployment of its own with the model in its store."""
        cluster = Cluster(self.bootstrap, self.tmp / name, {**WORKER_ENV, **(env or {})})
        os.symlink(self.model_path, cluster.store / self.model.version)
        return cluster

    def rule(self, cluster: Cluster) -> StateRule:
        """The event-to-state rule the cluster's workers apply (settings + the model's weights)."""
        settings = load_settings({k: v for k, v in cluster.env.items() if k.startswith("RECSYS_")})
        return StateRule.from_settings(settings).with_weights(SignalWeights.from_meta(self.model.meta))


@dataclass
class Result:
    """A scenario's verdict and its figures for ``faults.json``."""

    name: str
    verdict: Verdict
    figures: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {**self.verdict.summary(), **self.figures}


def train(tmp: Path) -> tuple[Model, Path]:
    """A small model of :data:`SHOP`, saved under ``tmp``."""
    from batch.retrain import retrain
    from batch.training import TrainingParams
    columns, _ = generate_columns(60_000, seed=11, params=SHOP)
    settings = load_settings(als_factors=16, als_iterations=6, similar_k=40)
    return retrain(columns, tmp, params=TrainingParams.from_settings(settings), progress=False)


def replay(n_events: int, seed: int) -> list[Message]:
    """``n_events`` valid events of :data:`SHOP`, keyed by user id."""
    return [Message(e.user_id.encode(), e.to_json_bytes())
            for e in synthetic_events(n_events, seed=seed, params=SHOP)]


def _finish(cluster: Cluster, watcher: ListWatcher, event_ids: set, name: str = "w1"):
    """Wait until every id in ``event_ids`` has a list, then stop the worker."""
    try:
        watcher.wait_for(lambda w: event_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                         alive=lambda: cluster.alive(name), what="the replay's lists")
    except AssertionError:
        pass  # the verdict names what is missing
    return cluster.stop(name)


def kill9(setup: Setup, *, n_events: int = 30_000, kills: int = 3, seed: int = 5,
          replaced: bool = False) -> Result:
    """(a) ``kill -9`` of the worker at ``kills`` random points of a replay, each followed by
    a restart; ``recovery_s_max`` is the longest time from a restart to its first new list.

    ``replaced``: each restart comes under a new worker id, as a replacement
    machine would, so the group waits for the killed member's session to
    expire and then rebalances (the path static membership avoids).
    """
    cluster = setup.cluster("kill9-replaced" if replaced else "kill9")
    messages = replay(n_events, seed)
    cluster.send(messages)
    event_ids = {event_id(m) for m in messages}
    watcher = ListWatcher(cluster)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(n_events // 10, n_events * 8 // 10), kills))
    recoveries = []
    try:
        cluster.start()
        for point in points:
            watcher.wait_for(lambda w, point=point: w.total >= point, REPLAY_TIMEOUT_S,
                             alive=lambda: cluster.alive(), what=f"{point} lists")
            cluster.kill()
            restarted = time.time()
            if replaced:
                cluster.env["RECSYS_WORKER_ID"] = f"w1-{len(recoveries) + 1}"
            cluster.start()
            watcher.wait_for(lambda w, since=restarted: w.first_after(since) is not None, 60,
                             alive=lambda: cluster.alive(), what="a list after the restart")
            recoveries.append(watcher.first_after(restarted))
        status = _finish(cluster, watcher, event_ids)
        verdict = verify(cluster, messages, watcher, setup.rule(cluster))
    finally:
        watcher.close()
        cluster.close()
    return Result("kill9_replaced" if replaced else "kill9", verdict, {
        "kills": kills, "partitions": 8, "users": len({m.key for m in messages}),
        "recovery_s_max": round(max(recoveries), 2),
        "recovery_s": [round(r, 2) for r in recoveries], "exit_status": status})


def poison(setup: Setup, *, n_valid: int = 20_000, n_bad: int = 10_000, n_copies: int = 1_000,
           seed: int = 9) -> Result:
    """(d) ``n_bad`` adversarial messages interleaved at random with ``n_valid`` valid events,
    then ``n_copies`` second copies of valid events sent long after their originals."""
    import orjson
    from adversarial import adversarial_events, spaced_copies

    cluster = setup.cluster("poison")
    valid = replay(n_valid, seed)
    pool = [orjson.loads(m.value) for m in valid]
    bad = adversarial_events(n_bad, seed=seed, valid_pool=pool)
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(n_valid + n_bad), n_bad))
    messages, codes, next_valid, next_bad = [], {}, iter(valid), iter(bad)
    for index in range(n_valid + n_bad):
        if slots and slots[0] == index:
            slots.pop(0)
            planned = next(next_bad)
            codes[len(messages)] = planned.code
            messages.append(Message(planned.key, planned.value))
        else:
            messages.append(next(next_valid))
    copies = set()
    rule = StateRule()
    for planned in spaced_copies(pool, n_copies, seed=seed, recent=rule.dedup_max_ids,
                                 window_s=rule.dedup_window_s):
        copies.add(len(messages))
        messages.append(Message(planned.key, planned.value))
    cluster.send(messages)
    valid_ids = {event["event_id"] for event in pool}
    watcher = ListWatcher(cluster)
    try:
        cluster.start()
        watcher.wait_for(lambda w: valid_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                         alive=lambda: cluster.alive(), what="the valid events' lists")
        _wait_for_outcomes(cluster, len(messages))
        _, metrics = cluster.get("w1", "/metrics.json")
        health, _ = cluster.get("w1", "/health/")
        status = cluster.stop()
        verdict = verify(cluster, messages, watcher, setup.rule(cluster), expected_codes=codes,
                         copies=copies)
    finally:
        watcher.close()
        cluster.close()
    return Result("poison", verdict, {
        "bad_events": n_bad, "copies": n_copies, "valid_events": n_valid,
        "dead_letter_codes": dict(sorted(verdict.dead_letters.items())),
        "duplicates_counted": metrics.get("events", {}).get("duplicate", 0),
        "health_status": health, "exit_status": status})


def _wait_for_outcomes(cluster: Cluster, n: int, name: str = "w1", timeout_s: float = 60.0):
    """Wait until worker ``name`` has an outcome (list, dead letter, duplicate) for ``n`` events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, metrics = cluster.get(name, "/metrics.json")
        if sum(metrics.get("events", {}).values()) >= n:
            return
        time.sleep(0.2)


def _wait_for_dead_letters(cluster: Cluster, n: int, timeout_s: float = 60.0) -> None:
    """Wait until the cluster's dead-letter topic holds ``n`` messages."""
    deadline = time.monotonic() + timeout_s
    while len(cluster.read_all(cluster.topics["dlq"])) < n and time.monotonic() < deadline:
        time.sleep(0.5)


def agent_error(setup: Setup, *, n_events: int = 5_000, seed: int = 13) -> Result:
    """(f) Exceptions inside the agent: the message of some events' lists cannot be built
    (each such event goes to the dead-letter topic, the rest go on), and one row write
    fails (the worker exits non-zero; restarted, it finishes with nothing lost)."""
    cluster = setup.cluster("agent-error")
    messages = replay(n_events, seed)
    rng = random.Random(seed)
    failing = sorted(rng.sample(range(n_events), 20))
    ids = [event_id(m) for m in messages]
    write_at = ids[n_events // 2]
    marker = cluster.tmp / "write-failed"
    cluster.env.update({"FAULT_LIST_IDS": ",".join(ids[i] for i in failing),
                        "FAULT_WRITE_ID": write_at, "FAULT_WRITE_MARKER": str(marker)})
    launcher = Path(__file__).with_name("faulty_worker.py")
    cluster.send(messages)
    watcher = ListWatcher(cluster)
    codes = {i: "processing_error" for i in failing}
    listed = set(ids) - {ids[i] for i in failing}
    try:
        cluster.start(launcher=launcher)
        crashed_at = time.monotonic()
        exit_status = cluster.workers["w1"].wait(REPLAY_TIMEOUT_S)
        crash_s = time.monotonic() - crashed_at
        restarted = time.time()
        cluster.start(launcher=launcher)
        watcher.wait_for(lambda w: listed <= w.counts.keys(), REPLAY_TIMEOUT_S,
                         alive=lambda: cluster.alive(), what="the lists")
        recovery_s = watcher.first_after(restarted)
        _wait_for_dead_letters(cluster, len(failing))
        status = cluster.stop()
        verdict = verify(cluster, messages, watcher, setup.rule(cluster), expected_codes=codes)
    finally:
        watcher.close()
        cluster.close()
    return Result("agent_error", verdict, {
        "list_errors": len(failing), "write_error_exit_status": exit_status,
        "write_error_marker": marker.exists(), "exit_within_s": round(crash_s, 2),
        "recovery_s_max": round(recovery_s, 2) if recovery_s is not None else None,
        "exit_status": status})
