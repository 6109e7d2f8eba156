"""The stream worker end to end: a real broker, a real worker process, real RocksDB tables.

One worker serves the module's tests in order; the last test restarts it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from batch.retrain import params_from_settings, retrain
from batch.synthetic import ShopParams, generate_columns
from shared.config import load_settings
from shared.messages import model_update_message, parse_dead_letter, parse_recommendation
from shared.model_store import load_model
from shared.topics import TopicSpec, ensure_topics

ROOT = Path(__file__).resolve().parents[2]
SHOP = ShopParams(n_items=400, n_categories=8, anonymous_share=0.5)
T0 = 1_750_000_000_000


def _event(event_id, user, session, item, kind="view", ts=T0, **extra) -> dict:
    fields = {"event_id": event_id, "session_id": session, "item_id": item, "type": kind, "ts": ts}
    if user is not None:
        fields["user_id"] = user
    return {**fields, **extra}


class Shop:
    """A running worker, its topics, and clients to talk to it."""

    def __init__(self, bootstrap: str, tmp: Path, web_port: int):
        self.bootstrap = bootstrap
        self.run = f"w-{uuid.uuid4().hex[:8]}"
        self.topics = {kind: f"{self.run}-{kind}" for kind in ("events", "recs", "dlq", "models")}
        self.store = tmp / "models"
        self.web_port = web_port
        self.env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap,
                        RECSYS_EVENTS_TOPIC=self.topics["events"],
                        RECSYS_RECOMMENDATIONS_TOPIC=self.topics["recs"],
                        RECSYS_DLQ_TOPIC=self.topics["dlq"],
                        RECSYS_MODEL_UPDATES_TOPIC=self.topics["models"],
                        RECSYS_APP_ID=self.run, RECSYS_MODEL_DIR=str(self.store),
                        RECSYS_TABLE_DIR=str(tmp / "tables"), RECSYS_WEB_PORT=str(web_port),
                        RECSYS_EVENTS_PARTITIONS="4", RECSYS_RECOMMENDATIONS_PARTITIONS="4",
                        RECSYS_FILTER_BOUGHT="true", RECSYS_MODEL_POLL_S="0.2")
        self.log = tmp / "worker.log"
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.consumers = {}
        self.worker = None

    def start(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "stream", "--loglevel", "info"], env=self.env,
            cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()

    def send(self, *events, compression: str | None = None) -> None:
        producer = self.producer
        if compression:
            producer = Producer({"bootstrap.servers": self.bootstrap,
                                 "compression.type": compression})
        for event in events:
            raw = event if isinstance(event, bytes) else json.dumps(event).encode()
            key = b"raw" if isinstance(event, bytes) else (event.get("user_id") or event["session_id"]).encode()
            producer.produce(self.topics["events"], key=key, value=raw)
        assert producer.flush(30) == 0

    def read(self, kind: str, n: int, timeout_s: float = 60.0) -> list:
        """The next ``n`` messages on a topic (fails when they don't come)."""
        if kind not in self.consumers:
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"t-{kind}-{self.run}",
                                 "auto.offset.reset": "earliest"})
            consumer.subscribe([self.topics[kind]])
            self.consumers[kind] = consumer
        out, deadline = [], time.monotonic() + timeout_s
        while len(out) < n:
            assert self.worker.poll() is None, self.log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{len(out)} of {n} on {kind}:\n{self.log.read_text()[-3000:]}"
            for message in self.consumers[kind].consume(n - len(out), timeout=0.5):
                if message.error() is None:
                    out.append(message)
        return out

    def recommendations(self, n: int, timeout_s: float = 60.0) -> list[dict]:
        return [parse_recommendation(m.value()) for m in self.read("recs", n, timeout_s)]

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def close(self) -> None:
        self.stop()
        for consumer in self.consumers.values():
            consumer.close()


@pytest.fixture(scope="module")
def truth_and_model(tmp_path_factory):
    """A model trained on a small synthetic shop, and the shop's ground truth."""
    columns, truth = generate_columns(60_000, seed=11, params=SHOP)
    settings = load_settings(als_factors=16, als_iterations=8, similar_k=40)
    store = tmp_path_factory.mktemp("store")
    model, path = retrain(columns, store, progress=False, **params_from_settings(settings))
    return truth, model, path


@pytest.fixture(scope="module")
def shop(kafka_bootstrap, truth_and_model, tmp_path_factory, free_port):
    tmp = tmp_path_factory.mktemp("worker")
    shop = Shop(kafka_bootstrap, tmp, free_port())
    _, model, path = truth_and_model
    (shop.store / model.version).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path, shop.store / model.version)
    ensure_topics(kafka_bootstrap, [TopicSpec(shop.topics["events"], 4, {}),
                                    TopicSpec(shop.topics["recs"], 4, {})])
    shop.start()
    yield shop
    shop.close()


def test_events_get_recommendations_for_their_item_without_bought_items(shop, truth_and_model):
    _, model, _ = truth_and_model
    items = model.item_ids[:3].tolist()
    shop.send(_event("a1", "alice", "sa", items[0], dwell_ms=30000),
              _event("a2", "alice", "sa", items[1], kind="buy", ts=T0 + 1000, quantity=1),
              _event("a3", "alice", "sa", items[2], ts=T0 + 2000))
    recs = shop.recommendations(3, timeout_s=90)
    assert [r["event_id"] for r in recs] == ["a1", "a2", "a3"]
    assert [r["query_item_id"] for r in recs] == items
    assert all(r["user_id"] == "alice" and r["session_id"] == "sa" for r in recs)
    assert all(r["model_version"] == model.version for r in recs)
    assert all(len(r["items"]) == 20 for r in recs)
    assert items[1] not in [i["item_id"] for i in recs[2]["items"]]
    scores = [i["score"] for i in recs[2]["items"]]
    assert scores == sorted(scores, reverse=True)
    status, last = shop.get("/recommendations/alice/")
    assert status == 200 and last["event_id"] == "a3"


def test_redelivered_event_is_applied_once(shop, truth_and_model):
    _, model, _ = truth_and_model
    item = model.item_ids[5]
    once = _event("dup-1", "bob", "sb", item)
    shop.send(once, once, _event("dup-2", "bob", "sb", model.item_ids[6], ts=T0 + 10))
    recs = shop.recommendations(2)
    assert [r["event_id"] for r in recs] == ["dup-1", "dup-2"]
    assert shop.get("/metrics/")[1]["events"]["duplicate"] >= 1


def test_bad_events_go_to_the_dead_letter_topic_and_the_worker_goes_on(shop, truth_and_model):
    _, model, _ = truth_and_model
    bad = [b"{not json", json.dumps({"event_id": "x1", "session_id": "s", "type": "view",
                                     "ts": T0}).encode(),
           json.dumps(_event("x2", "carol", "sc", "i1", kind="teleport")).encode(),
           b"\xff\xfe\x00"]
    shop.send(*bad)
    shop.send(_event("ok-1", "carol", "sc", model.item_ids[7]), compression="lz4")
    letters = [parse_dead_letter(m.value()) for m in shop.read("dlq", 4)]
    assert [d["error_code"] for d in letters] == ["not_json", "missing_field", "unknown_type", "not_utf8"]
    assert [d["original"] for d in letters] == bad
    assert all(d["source_topic"] == shop.topics["events"] and d["source_offset"] >= 0 for d in letters)
    assert shop.recommendations(1)[0]["event_id"] == "ok-1"
    assert shop.get("/metrics/")[1]["dead_letters"] == {"not_json": 1, "missing_field": 1,
                                                        "unknown_type": 1, "not_utf8": 1}


def test_new_visitor_in_one_category_gets_that_category(shop, truth_and_model):
    truth, model, _ = truth_and_model
    categories = truth.item_category[np.char.lstrip(model.item_ids.astype(str), "i").astype(int)]
    category = np.bincount(categories).argmax()
    in_category = model.item_ids[categories == category][:6].tolist()
    shop.send(*[_event(f"v{k}", None, "visitor-1", item, ts=T0 + k * 1000, dwell_ms=20000)
                for k, item in enumerate(in_category)])
    last = shop.recommendations(len(in_category))[-1]
    assert last["user_id"] == "visitor-1"
    rec_items = [i["item_id"] for i in last["items"]]
    share = np.mean([categories[model.item_index[i]] == category for i in rec_items])
    chance = np.mean(categories == category)
    assert share >= 0.7 > chance


def test_hot_swap_under_traffic_within_five_seconds(shop, truth_and_model, tmp_path):
    _, model, path = truth_and_model
    broken_version = "20990101T000000Z-000001"
    broken = shop.store / broken_version
    import shutil
    shutil.copytree(path, broken)
    (broken / "item_factors.npy").write_bytes(b"tampered" + (broken / "item_factors.npy").read_bytes()[8:])
    shop.producer.produce(shop.topics["models"], key=b"model",
                          value=model_update_message(broken_version, str(broken), 0))
    shop.producer.flush(10)

    new = load_model(path)
    new_version = "20990101T000000Z-000000"
    shutil.copytree(path, shop.store / new_version)
    meta = json.loads((shop.store / new_version / "meta.json").read_text())
    meta["version"] = new_version
    (shop.store / new_version / "meta.json").write_text(json.dumps(meta))
    sent = []
    for k in range(80):
        event = _event(f"hs-{k}", f"user-{k % 7}", f"sess-{k % 7}", new.item_ids[k % 50],
                       ts=T0 + 100_000 + k)
        shop.send(event)
        sent.append(event["event_id"])
        if k == 20:
            shop.producer.produce(shop.topics["models"], key=b"model",
                                  value=model_update_message(new_version, str(shop.store / new_version), 0))
            shop.producer.flush(10)
        time.sleep(0.1)
    recs = shop.recommendations(len(sent), timeout_s=90)
    assert sorted(r["event_id"] for r in recs) == sorted(sent)
    versions = [r["model_version"] for r in recs if r["event_id"] in sent]
    first_new = versions.index(new_version)
    assert versions[:first_new] == [model.version] * first_new
    assert versions[first_new:] == [new_version] * (len(versions) - first_new)
    assert 21 <= first_new <= 20 + 50  # 50 events 0.1 s apart: within 5 s of the announcement
    status, metrics = shop.get("/metrics/")
    assert metrics["model_version"] == new_version
    assert broken_version in metrics["models_refused"]
    assert shop.get("/health/") == (200, {"status": "ok", "model_version": new_version})


def test_restart_resumes_from_its_tables(shop, truth_and_model):
    _, model, _ = truth_and_model
    bought = model.item_ids[1]
    shop.stop()
    shop.start()
    shop.send(_event("a4", "alice", "sa", model.item_ids[0], ts=T0 + 5000),
              _event("a1", "alice", "sa", model.item_ids[9], ts=T0 + 6000))
    recs = shop.recommendations(1, timeout_s=120)
    assert recs[0]["event_id"] == "a4"
    assert bought not in [i["item_id"] for i in recs[0]["items"]]
    status, last = shop.get("/recommendations/alice/")
    assert status == 200 and last["event_id"] == "a4"
