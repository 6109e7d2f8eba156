"""``recsys demo``: the whole system on embedded defaults, end to end, in a few minutes.

1. a Kafka broker (the project's own unless ``KAFKA_BOOTSTRAP`` is set) and the topics;
2. a synthetic shop's history produced to ``events``;
3. a retrain from the topic, announced on ``model-updates``;
4. a stream worker started beside it;
5. live visits replayed at a steady rate (plus two malformed events), and the
   recommendations read back as a shop front would;
6. a second retrain that the running worker hot-swaps;
7. the worker's own metrics, then a clean stop.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer

from batch.produce import produce_events, synthetic_events
from batch.retrain import RetrainJob
from batch.training import TrainingParams
from shared import kafka_security
from shared.broker import ensure_broker
from shared.messages import parse_recommendation
from shared.model_store import load_latest
from shared.topics import ensure_topics, project_topics


def add_arguments(parser) -> None:
    """Options of ``recsys demo``."""
    parser.add_argument("--history", type=int, default=50_000,
                        help="synthetic events produced before the first retrain")
    parser.add_argument("--live", type=int, default=5_000, help="events replayed live")
    parser.add_argument("--rate", type=float, default=500.0, help="live events per second")
    parser.add_argument("--seed", type=int, default=7)


def _command() -> str:
    """How to run ``recsys`` from here: the script beside this Python when there is one."""
    script = Path(sys.executable).parent / "recsys"
    if not script.exists():
        return f"{sys.executable} -m recsys"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _get(port: int, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _wait_for(condition, timeout_s: float, what: str, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not {what}; see var/demo/worker.log")
        time.sleep(0.3)


def _caught_up(metrics: dict | None, partitions: int) -> bool:
    """Every partition of the events topic read to its end."""
    lag = (metrics or {}).get("consumer_lag", {})
    return len(lag) == partitions and not any(lag.values())


def _read_recommendations(bootstrap: str, topic: str, event_ids: set, timeout_s: float) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-shop-front-{os.getpid()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         **kafka_security.from_environ().confluent()})
    consumer.subscribe([topic])
    found, deadline = {}, time.monotonic() + timeout_s
    try:
        while len(found) < len(event_ids) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    rec = parse_recommendation(message.value())
                    if rec["event_id"] in event_ids:
                        found[rec["event_id"]] = rec
    finally:
        consumer.close()
    return list(found.values())


def _show_visitor(recs: list[dict], model) -> None:
    """One visitor's session and the categories of what they were shown last."""
    by_session = {}
    for rec in recs:
        by_session.setdefault(rec["session_id"], []).append(rec)
    session, visit = max(by_session.items(), key=lambda kv: len(kv[1]))
    def category(item: str) -> str:
        code = model.item_category[model.item_index[item]] if item in model.item_index else -1
        return model.categories[code] if code >= 0 else "?"

    print(f"visitor {visit[-1]['user_id']} (session {session}) looked at: "
          + ", ".join(f"{r['query_item_id']} [{category(r['query_item_id'])}]" for r in visit[-6:]))
    last = visit[-1]
    print(f"recommended after the last view (strategy {last['strategy']}):")
    for entry in last["items"][:8]:
        print(f"  {entry['item_id']:>8} [{category(entry['item_id'])}] score {entry['score']:.3f}")
    shares = Counter(category(e["item_id"]) for e in last["items"])
    print("categories of the whole list: " + ", ".join(f"{c} x{n}" for c, n in shares.most_common()))


def run(args, settings) -> int:
    """Run the demo; the broker it started is left running for a look around."""
    work = Path("var/demo")
    work.mkdir(parents=True, exist_ok=True)
    _step("Kafka broker and topics")
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, project_topics(settings), replication_factor=settings.replication_factor)
    print(f"bootstrap {bootstrap}; topics {settings.events_topic}, {settings.recommendations_topic}, "
          f"{settings.dlq_topic}, {settings.model_updates_topic}")

    _step(f"history: {args.history:,} synthetic shop events -> {settings.events_topic}")
    summary = produce_events(bootstrap, settings.events_topic,
                             synthetic_events(args.history, seed=args.seed))
    print(f"delivered {summary.delivered:,} in {summary.elapsed_s:.1f} s")

    _step("retrain from the topic, announce on model-updates")
    job = RetrainJob(store_dir=Path(settings.model_dir), params=TrainingParams.from_settings(settings),
                     keep_versions=settings.keep_versions, bootstrap=bootstrap,
                     events_topic=settings.events_topic, announce_topic=settings.model_updates_topic,
                     limits=settings.event_limits(), progress=False)
    model, path = job()
    print(f"model {model.version}: {model.n_items:,} items, trained in "
          f"{sum(model.meta['timings_s'].values()):.1f} s -> {path}")

    _step("stream worker")
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap)
    log = (work / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "recsys", "stream", "--loglevel", "warn"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    port = settings.web_port
    try:
        _wait_for(lambda: (_get(port, "/health/") or {}).get("status") == "ok", 120, "start", worker)
        print(f"worker up: http://127.0.0.1:{port}/health/  /metrics  /metrics.json  "
              f"/recommend?user=<user>&item=<item>  /recommendations/<user>/")
        started = time.monotonic()
        _wait_for(lambda: _caught_up(_get(port, "/metrics.json"), settings.events_partitions), 600,
                  "catch up with the history", worker)
        events = sum((_get(port, "/metrics.json") or {}).get("events", {}).values())
        print(f"worker built its tables from the history: {events:,} events in "
              f"{time.monotonic() - started:.0f} s")

        _step(f"live: {args.live:,} events at {args.rate:,.0f}/s, plus 2 malformed ones")
        live = list(synthetic_events(args.live, seed=args.seed + 1))
        live_summary = produce_events(bootstrap, settings.events_topic, live, rate=args.rate)
        bad = Producer({"bootstrap.servers": bootstrap,
                        **kafka_security.from_environ().confluent()})
        bad.produce(settings.events_topic, key=b"demo", value=b"{this is not json")
        bad.produce(settings.events_topic, key=b"demo", value=b'{"event_id": "x", "type": "view"}')
        bad.flush(10)
        recs = _read_recommendations(bootstrap, settings.recommendations_topic,
                                     {e.event_id for e in live}, timeout_s=120)
        print(f"sent {live_summary.delivered:,} live events; {len(recs):,} recommendations came back")
        _show_visitor(recs, load_latest(settings.model_dir))

        _step("second retrain (history + live events); the worker hot-swaps it")
        second, _ = job()
        announced = time.monotonic()
        _wait_for(lambda: (_get(port, "/metrics.json") or {}).get("model_version") == second.version,
                  60, "swap to the new model", worker)
        print(f"worker serves {second.version} {time.monotonic() - announced:.1f} s after the announcement")

        _step("worker metrics")
        print(json.dumps(_get(port, "/metrics.json"), indent=2))
    finally:
        worker.terminate()
        worker.wait(60)
    print(f"\nDone. The broker keeps running ({bootstrap}); read the lists with "
          f"{_command()} tail recommendations, stop it with {_command()} kafka stop")
    return 0
