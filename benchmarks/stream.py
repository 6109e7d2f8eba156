"""Benchmark the stream worker through a real Kafka broker.

In one run, on the same pre-produced synthetic events:

(a) ``throughput_eps``: one worker process (``recsys stream``) turning events
    into recommendations, from its first recommendation to its last
    (broker timestamps of the recommendation messages);
    ``baseline_eps``: a bare confluent-kafka consume -> produce loop doing no work;
    ``faust_noop_eps``: a Faust agent that does no work, the framework's ceiling.
    ``--throughput-runs`` rounds (default 3) each measure the no-op agent, the
    worker and the worker on the paper profile back to back; the figures are
    the rounds' medians (``faust_noop_ratio``: the median of each round's
    worker / no-op ratio), and ``throughput_runs`` lists the rounds;
(b) ``latency_ms``: events offered at a fixed rate to a running worker, from
    each event's produce time to its recommendation's arrival at a consumer,
    after ``--warmup`` seconds at that rate; ``--latency-runs`` runs (each a
    fresh worker), reported in ``latency_runs``, and ``latency_ms`` is the run
    with the median p99. Each run also splits the latency at the moment the
    worker built the list (its ``generated_at``): ``to_list_built_ms`` (the
    event's way to the worker and its handling there) and
    ``list_built_to_consumer_ms`` (the list's way to a consumer).

The worker runs on the configuration a shop gets (``configuration``:
``defaults`` unless ``RECSYS_*`` settings or ``RECSYS_CONFIG`` change it), and
in each round once more on ``profiles/paper.toml`` (the paper's path), with a
model trained on that profile's parameters: ``paper_profile``.

Writes ``benchmarks/results/stream.json``::

    python benchmarks/stream.py [--events 100000] [--rate 1000] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from statistics import median
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batch.retrain import retrain  # noqa: E402
from batch.synthetic import generate_columns  # noqa: E402
from batch.synthetic_file import write_jsonl  # noqa: E402
from batch.training import TrainingParams  # noqa: E402
from shared.broker import KAFKA_VERSION, ephemeral_broker, free_port  # noqa: E402
from shared.config import CONFIG_ENV, load_settings, read_settings  # noqa: E402
from shared.topics import TopicSpec, ensure_topics  # noqa: E402
from stream.worker import own_topics_env  # noqa: E402


def synthetic_messages(n: int, seed: int, work: Path) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of ``n`` synthetic events in the event contract, keyed by user id."""
    path = work / f"events-{seed}-{n}.jsonl"
    write_jsonl(path, n, seed=seed)
    out = []
    for line in path.read_bytes().splitlines():
        event = json.loads(line)
        out.append(((event.get("user_id") or event["session_id"]).encode(), line))
    return out


def produce_all(bootstrap: str, topic: str, messages, rate: float | None = None) -> dict[bytes, float]:
    """Send ``messages``; at ``rate`` events/s when given. Returns event_id -> send time."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5 if rate is None else 0,
                         "enable.idempotence": True})
    sent = {}
    if rate is not None:
        # The first event goes out alone and unmeasured: an idempotent producer's
        # start-up (connection, producer id) would otherwise count as latency.
        producer.produce(topic, key=messages[0][0], value=messages[0][1])
        assert producer.flush(30) == 0
        messages = messages[1:]
    started = time.perf_counter()
    for i, (key, value) in enumerate(messages):
        if rate is not None:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[json.loads(value)["event_id"]] = time.time()
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return sent


def consume_count(bootstrap: str, topic: str, n: int, timeout_s: float,
                  on_message=None, ready: threading.Event | None = None) -> list[float]:
    """Broker timestamps (s) of the first ``n`` messages on ``topic``.

    With ``on_message`` (latency runs) the client takes each message as soon
    as it is there (``poll``): ``consume(n, timeout)`` waits for ``n``
    messages or the timeout, which would add up to the timeout to each
    latency. ``ready`` is set once the client has its partitions: a latency
    run starts sending only then, so the client's group join is not counted
    as latency.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic], on_assign=lambda *_: ready and ready.set())
    stamps = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(stamps) < n and time.monotonic() < deadline:
            if on_message is None:
                messages = consumer.consume(1000, timeout=0.5)
            else:
                message = consumer.poll(0.1)
                messages = [] if message is None else [message]
            for message in messages:
                if message.error():
                    continue
                stamps.append(message.timestamp()[1] / 1000.0)
                if on_message is not None:
                    on_message(message)
    finally:
        consumer.close()
    return stamps


def rate_between(stamps: list[float]) -> float:
    """Messages per second from the first to the last timestamp."""
    if len(stamps) < 2:
        return 0.0
    return (len(stamps) - 1) / max(max(stamps) - min(stamps), 1e-9)


PAPER_PROFILE = ROOT / "profiles" / "paper.toml"


def worker_env(bootstrap: str, run: str, store: Path, tables: Path,
               config: Path | None = None) -> dict:
    env = {**os.environ, **own_topics_env(run, bootstrap=bootstrap, model_dir=store,
                                          table_dir=tables, web_port=free_port())}
    if config is not None:
        env[CONFIG_ENV] = str(config)
    return env


def configuration(sources: dict[str, str]) -> str:
    """``defaults`` when no scoring, state or training setting is set; else ``settings``."""
    changed = [name for name in SCORED if sources[name] != "default"]
    return "defaults" if not changed else "settings: " + ", ".join(sorted(changed))


#: The settings that change what a worker computes per event.
SCORED = ("n_recommendations", "blend", "filter_bought", "filter_shown", "normalisation",
          "exclude_query", "exclude_session", "session_max", "user_sessions", "history_max",
          "decay_half_life_s", "alpha", "als_factors", "als_regularization", "als_iterations",
          "similar_k", "weight_view", "weight_dwell", "dwell_cap_ms", "weight_click",
          "weight_add_to_cart", "weight_buy", "batch_max",
          *(f"source_{name}" for name in ("similar", "cooc", "next", "session", "similar_decay",
                                          "cooc_decay", "next_decay", "session_decay", "window",
                                          "pool")))


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recsys", "stream", "--loglevel", "warn"],
                            env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def bench_worker(bootstrap, messages, store, work, config: Path | None = None) -> float:
    run = f"bench-worker-{uuid.uuid4().hex[:6]}"
    env = worker_env(bootstrap, run, store, work / run, config)
    ensure_topics(bootstrap, [TopicSpec(f"{run}-events", 8, {})])
    produce_all(bootstrap, f"{run}-events", messages)
    worker = start_worker(env, work / f"{run}.log")
    try:
        stamps = consume_count(bootstrap, f"{run}-recs", len(messages), timeout_s=600)
    finally:
        stop(worker)
    if len(stamps) < len(messages):
        raise SystemExit(f"worker produced {len(stamps)} of {len(messages)} recommendations; "
                         f"see {work / f'{run}.log'}")
    return rate_between(stamps)


def bench_baseline(bootstrap, messages) -> float:
    """A bare confluent-kafka consume -> produce loop over the same events."""
    run = f"bench-base-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [TopicSpec(f"{run}-events", 8, {}), TopicSpec(f"{run}-out", 8, {})])
    produce_all(bootstrap, f"{run}-events", messages)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": run,
                         "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    consumer.subscribe([f"{run}-events"])
    done = 0
    try:
        while done < len(messages):
            for message in consumer.consume(1000, timeout=1.0):
                if message.error():
                    continue
                while True:
                    try:
                        producer.produce(f"{run}-out", key=message.key(), value=message.value())
                        break
                    except BufferError:
                        producer.poll(0.05)
                done += 1
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()
    return rate_between(consume_count(bootstrap, f"{run}-out", len(messages), timeout_s=120))


def bench_faust_noop(bootstrap, messages, work, fastpath: bool = True) -> float:
    """A Faust agent that does nothing: the framework's own ceiling (with or without
    :mod:`stream.faust_fixes`)."""
    run = f"bench-noop-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [TopicSpec(f"{run}-events", 8, {})])
    produce_all(bootstrap, f"{run}-events", messages)
    result = work / f"{run}.json"
    env = dict(os.environ, NOOP_BOOTSTRAP=bootstrap, NOOP_TOPIC=f"{run}-events", NOOP_APP_ID=run,
               NOOP_EVENTS=str(len(messages)), NOOP_RESULT=str(result),
               NOOP_DATADIR=str(work / run), NOOP_FASTPATH="1" if fastpath else "0")
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.faust_noop_app", "worker",
                                "--loglevel", "warn",
                                "--web-port", str(free_port())], env=env, cwd=ROOT,
                               stdout=(work / f"{run}.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not result.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    stop(process)
    if not result.exists():
        raise SystemExit(f"the no-op Faust agent did not finish; see {work / f'{run}.log'}")
    return json.loads(result.read_text())["eps"]


def bench_latency(bootstrap, messages, store, work, rate: float, warmup_s: float) -> dict:
    """Event -> recommendation latency at ``rate`` events/s, after ``warmup_s`` seconds at that
    rate that are not measured: in the first second after a fresh start, events reach the
    worker's agent up to half a second after they were produced (the time goes between the
    produce and the agent, not in the agent), which says nothing about steady state."""
    run = f"bench-latency-{uuid.uuid4().hex[:6]}"
    env = worker_env(bootstrap, run, store, work / run)
    ensure_topics(bootstrap, [TopicSpec(f"{run}-events", 8, {}), TopicSpec(f"{run}-recs", 8, {})])
    worker = start_worker(env, work / f"{run}.log")
    # Warm up: wait until the worker answers, so start-up is not counted as latency.
    produce_all(bootstrap, f"{run}-events", messages[:50])
    consume_count(bootstrap, f"{run}-recs", 50, timeout_s=120)
    arrivals: dict[str, float] = {}
    generated: dict[str, float] = {}

    def on_message(message):
        now = time.time()
        value = json.loads(message.value())
        arrivals[value["event_id"]] = now
        generated[value["event_id"]] = value["generated_at"] / 1000.0

    warmup = messages[50:50 + int(rate * warmup_s)]
    measured = messages[50 + len(warmup):]
    ready = threading.Event()
    reader = threading.Thread(target=consume_count, args=(bootstrap, f"{run}-recs", len(messages),
                                                          len(messages) / rate + 60, on_message,
                                                          ready))
    reader.start()
    if not ready.wait(60):
        raise SystemExit("the latency client got no partitions within 60 s")
    produce_all(bootstrap, f"{run}-events", warmup, rate=rate)
    sent = produce_all(bootstrap, f"{run}-events", measured, rate=rate)
    reader.join()
    stop(worker)
    got = [e for e in sent if e in arrivals]
    latencies = np.array([(arrivals[e] - sent[e]) * 1000.0 for e in got])
    # The two halves of each latency, on this machine's one clock: from the event's produce
    # to the worker's building its list (the list's generated_at), and from there to the
    # list's arrival at the consumer (the worker's producer, the broker, the consumer).
    upstream = np.array([(generated[e] - sent[e]) * 1000.0 for e in got])
    downstream = latencies - upstream
    return {"p50": round(float(np.percentile(latencies, 50)), 2),
            "p90": round(float(np.percentile(latencies, 90)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
            "max": round(float(latencies.max()), 2), "measured": int(len(latencies)),
            "missing": int(len(sent) - len(latencies)),
            "to_list_built_ms": _percentiles(upstream),
            "list_built_to_consumer_ms": _percentiles(downstream)}


def _percentiles(values: np.ndarray) -> dict:
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90, 99)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--train-events", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds at --rate before the latency is measured")
    parser.add_argument("--throughput-runs", type=int, default=3,
                        help="rounds of (Faust no-op agent, worker, paper profile) on the same "
                             "events; the medians are reported")
    parser.add_argument("--latency-runs", type=int, default=3,
                        help="latency runs, each on a fresh worker; the median p99 is reported")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream.json"))
    args = parser.parse_args(argv)

    settings, sources = read_settings()
    paper = load_settings({}, config_file=PAPER_PROFILE)
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-stream-"))
    with ExitStack() as stack:
        if "KAFKA_BOOTSTRAP" in os.environ:
            bootstrap = os.environ["KAFKA_BOOTSTRAP"]
        else:
            home = Path(settings.kafka_home).expanduser()
            bootstrap = stack.enter_context(ephemeral_broker(home)).bootstrap
        store, paper_store = work / "models", work / "models-paper"
        columns, _ = generate_columns(args.train_events, seed=1)
        retrain(columns, store, params=TrainingParams.from_settings(settings), progress=False)
        retrain(columns, paper_store, params=TrainingParams.from_settings(paper), progress=False)
        messages = synthetic_messages(args.events, seed=2, work=work)
        print(f"{len(messages):,} events ready", file=sys.stderr)
        baseline = bench_baseline(bootstrap, messages)
        print(f"baseline consume->produce: {baseline:,.0f} events/s", file=sys.stderr)
        noop_upstream = bench_faust_noop(bootstrap, messages, work, fastpath=False)
        print(f"Faust no-op agent with upstream's consumer hand-off: {noop_upstream:,.0f} events/s",
              file=sys.stderr)
        rounds = []
        for number in range(1, args.throughput_runs + 1):
            # One round: the no-op agent, the worker and the paper profile back to back, so
            # that each ratio compares runs the machine gave the same conditions.
            noop = bench_faust_noop(bootstrap, messages, work)
            worker = bench_worker(bootstrap, messages, store, work)
            paper = bench_worker(bootstrap, messages, paper_store, work, PAPER_PROFILE)
            rounds.append({"faust_noop_eps": round(noop), "throughput_eps": round(worker),
                           "faust_noop_ratio": round(worker / noop, 3),
                           "paper_profile_eps": round(paper)})
            print(f"round {number}: Faust no-op agent {noop:,.0f} events/s, worker {worker:,.0f} "
                  f"({worker / noop:.3f} of it), worker on {PAPER_PROFILE.name} {paper:,.0f}",
                  file=sys.stderr)
        latency_events = synthetic_messages(int(args.rate * (args.warmup + args.seconds)) + 50,
                                            seed=3, work=work)
        runs = []
        for _ in range(args.latency_runs):
            runs.append(bench_latency(bootstrap, latency_events, store, work, args.rate,
                                      args.warmup))
            print(f"latency at {args.rate:,.0f} events/s: {runs[-1]}", file=sys.stderr)
    latency = sorted(runs, key=lambda run: run["p99"])[(len(runs) - 1) // 2]
    throughput = median([r["throughput_eps"] for r in rounds])
    noop = median([r["faust_noop_eps"] for r in rounds])
    result = {
        "configuration": configuration(sources),
        "events": len(messages), "throughput_eps": round(throughput),
        "baseline_eps": round(baseline), "faust_noop_eps": round(noop),
        "faust_noop_upstream_eps": round(noop_upstream),
        "faust_noop_ratio": median([r["faust_noop_ratio"] for r in rounds]),
        "ratio": round(throughput / baseline, 3),
        "throughput_runs": rounds,
        "rate_eps": args.rate, "latency_warmup_s": args.warmup,
        "latency_ms": latency, "latency_runs": runs,
        "paper_profile": {"config": str(PAPER_PROFILE.relative_to(ROOT)),
                          "throughput_eps": round(median([r["paper_profile_eps"] for r in rounds])),
                          "faust_noop_ratio": round(
                              median([r["paper_profile_eps"] / r["faust_noop_eps"] for r in rounds]),
                              3)},
        "kafka_version": KAFKA_VERSION, "cpus": os.cpu_count(),
        "machine": platform.machine(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": {"throughput_eps": 5000, "faust_noop_ratio": 0.35, "latency_p99_ms": 50},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
