"""Benchmark: replay throughput of ``produce_events`` against a bare producer loop, and parse rate.

Draws N synthetic events once (held in memory as :class:`shared.events.Event`),
then, against a real broker, in alternating rounds:

- ``throughput_eps``: :func:`batch.produce.produce_events` on the Event
  objects, serialising each (canonical JSON) as ``recsys produce`` does;
- ``baseline_eps``: a bare confluent-kafka loop sending the same events'
  pre-serialised (key, value) bytes with the same producer settings;

each into a fresh topic with the configured partitions, timed to the last
acknowledgement; the best round of each counts. ``parse_eps`` is
:func:`shared.events.parse_event` over the same serialised values on one
core. Targets: ``ratio`` = throughput / baseline >= 0.7 and ``parse_eps`` >=
300,000.

Usage::

    nice python benchmarks/produce.py --events 1000000 --rounds 5   # the README's figures

Uses ``KAFKA_BOOTSTRAP`` when set, else starts the project's broker on free
ports and stops it at the end. Writes ``benchmarks/results/produce.json``
(``--out`` to change).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Producer

from batch.produce import produce_events, producer_config, synthetic_events
from shared.broker import KAFKA_VERSION, ephemeral_broker
from shared.config import load_settings
from shared.events import parse_event
from shared.topics import TopicSpec, ensure_topics

RESULTS = Path(__file__).resolve().parent / "results" / "produce.json"
TARGETS = {"ratio": 0.7, "parse_eps": 300_000}
NOTES = (
    "Events are drawn before timing and held as Event objects; throughput_eps includes the "
    "canonical JSON serialisation of each event and its key, baseline_eps sends bytes "
    "serialised beforehand. Both use batch.produce.PRODUCER_CONFIG, count delivery failures, "
    "poll every 1024 messages and stop the clock at the last acknowledgement (flush). Rounds "
    "alternate; the best of each counts. The pre-drawn events are frozen out of the cyclic GC. "
    "Broker, producer threads and Python share the machine's cores.")


@contextmanager
def broker() -> Iterator[tuple[str, str]]:
    """(bootstrap, Kafka version): ``KAFKA_BOOTSTRAP``, or a local broker for the run."""
    if "KAFKA_BOOTSTRAP" in os.environ:
        yield os.environ["KAFKA_BOOTSTRAP"], f"external broker (client pins {KAFKA_VERSION})"
        return
    with ephemeral_broker(Path(load_settings().kafka_home).expanduser()) as local:
        yield local.bootstrap, local.running_version()


def fresh_topic(bootstrap: str, partitions: int) -> str:
    name = f"bench-produce-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [TopicSpec(name, partitions, {})])
    return name


def bare_loop_eps(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Events/s of a plain produce loop over pre-serialised (key, value) pairs, to the last ack."""
    failed = []
    producer = Producer(producer_config(
        bootstrap, on_delivery=lambda err, msg: failed.append(err) if err else None))
    produce, poll = producer.produce, producer.poll
    started = time.monotonic()
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
        if not i & 1023:
            poll(0)
    producer.flush()
    elapsed = time.monotonic() - started
    if failed:
        raise RuntimeError(f"baseline: {len(failed)} deliveries failed, first: {failed[0]}")
    return len(messages) / elapsed


def produce_events_eps(bootstrap: str, topic: str, events: list) -> float:
    """Events/s of :func:`produce_events` over Event objects, to the last ack."""
    summary = produce_events(bootstrap, topic, events)
    if not summary.ok:
        raise RuntimeError(f"produce_events: {summary.failed} failed: {summary.errors}")
    return summary.rate_eps


def parse_eps(values: list[bytes]) -> float:
    """Events/s of :func:`parse_event` over ``values`` on this (one) core."""
    started = time.perf_counter()
    for value in values:
        parse_event(value)
    return len(values) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Alternating rounds of each measurement; the best counts.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    partitions = load_settings().events_partitions

    started = time.perf_counter()
    gc.disable()  # a million long-lived objects: collections would find nothing to free
    events = list(synthetic_events(args.events, seed=args.seed))
    messages = [(event.user_id.encode(), event.to_json_bytes()) for event in events]
    values = [value for _, value in messages]
    gc.freeze()
    gc.enable()
    generate_s = time.perf_counter() - started
    print(f"drew {len(events):,} events in {generate_s:.1f} s", file=sys.stderr)

    runs = {"throughput_eps": [], "baseline_eps": [], "parse_eps": []}
    load_before = os.getloadavg()
    with broker() as (bootstrap, kafka_version):
        for round_no in range(args.rounds):
            runs["baseline_eps"].append(
                bare_loop_eps(bootstrap, fresh_topic(bootstrap, partitions), messages))
            runs["throughput_eps"].append(
                produce_events_eps(bootstrap, fresh_topic(bootstrap, partitions), events))
            runs["parse_eps"].append(parse_eps(values))
            print(f"round {round_no + 1}: " + ", ".join(
                f"{name} {measured[-1]:,.0f}" for name, measured in runs.items()), file=sys.stderr)

    best = {name: max(measured) for name, measured in runs.items()}
    result = {
        "events": len(events),
        "throughput_eps": round(best["throughput_eps"]),
        "baseline_eps": round(best["baseline_eps"]),
        "ratio": round(best["throughput_eps"] / best["baseline_eps"], 3),
        "parse_eps": round(best["parse_eps"]),
        "runs": {name: [round(v) for v in measured] for name, measured in runs.items()},
        "round_ratios": [round(t / b, 3) for t, b in zip(runs["throughput_eps"],
                                                         runs["baseline_eps"])],
        "mean_value_bytes": round(sum(map(len, values)) / len(values), 1),
        "partitions": partitions,
        "generate_s": round(generate_s, 2),
        "producer_config": {k: v for k, v in producer_config("").items()
                            if k != "bootstrap.servers"},
        "notes": NOTES,
        "targets": TARGETS,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "kafka_version": kafka_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["meets_targets"] = all(result[name] >= floor for name, floor in TARGETS.items())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':16}{'value':>14}{'target':>12}")
    for name in ("throughput_eps", "baseline_eps", "ratio", "parse_eps"):
        target = f">= {TARGETS[name]:,}" if name in TARGETS else ""
        print(f"{name:16}{result[name]:>14,}{target:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
