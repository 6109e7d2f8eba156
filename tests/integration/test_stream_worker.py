"""The stream worker end to end: a real broker, a real worker process, real RocksDB tables.

One worker serves the module's tests in order; the last two restart it.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from worker_process import WorkerProcess

from batch.retrain import retrain
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.config import load_settings
from shared.messages import model_update_message, parse_dead_letter
from shared.model_store import load_model

SHOP = ShopParams(n_items=400, n_categories=8, anonymous_share=0.5)
T0 = 1_750_000_000_000


def _event(event_id, user, session, item, kind="view", ts=T0, **extra) -> dict:
    fields = {"event_id": event_id, "session_id": session, "item_id": item, "type": kind, "ts": ts}
    if user is not None:
        fields["user_id"] = user
    return {**fields, **extra}


@pytest.fixture(scope="module")
def truth_and_model(tmp_path_factory):
    """A model trained on a small synthetic shop, and the shop's ground truth."""
    columns, truth = generate_columns(60_000, seed=11, params=SHOP)
    settings = load_settings(als_factors=16, als_iterations=8, similar_k=40)
    store = tmp_path_factory.mktemp("store")
    model, path = retrain(columns, store, params=TrainingParams.from_settings(settings),
                          progress=False)
    return truth, model, path


@pytest.fixture(scope="module")
def shop(kafka_bootstrap, truth_and_model, tmp_path_factory, free_port):
    tmp = tmp_path_factory.mktemp("worker")
    shop = WorkerProcess(kafka_bootstrap, tmp, free_port(),
                         {"RECSYS_FILTER_BOUGHT": "true", "RECSYS_MODEL_POLL_S": "0.2",
                          "RECSYS_SESSION_TIMEOUT_S": "6"})
    _, model, path = truth_and_model
    shop.store.mkdir(parents=True, exist_ok=True)
    os.symlink(path, shop.store / model.version)
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
    assert shop.get("/metrics.json")[1]["events"]["duplicate"] >= 1


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
    assert shop.get("/metrics.json")[1]["dead_letters"] == {"not_json": 1, "missing_field": 1,
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
    sent, recs = [], []
    for k in range(80):
        event = _event(f"hs-{k}", f"user-{k % 7}", f"sess-{k % 7}", new.item_ids[k % 50],
                       ts=T0 + 100_000 + k)
        shop.send(event)
        sent.append(event["event_id"])
        if k == 20:
            # The first 21 lists are in before the announcement, so the swap cannot
            # overtake an event that was still on its way to the worker.
            recs += shop.recommendations(len(sent), timeout_s=90)
            shop.producer.produce(shop.topics["models"], key=b"model",
                                  value=model_update_message(new_version, str(shop.store / new_version), 0))
            shop.producer.flush(10)
        time.sleep(0.1)
    recs += shop.recommendations(len(sent) - len(recs), timeout_s=90)
    assert sorted(r["event_id"] for r in recs) == sorted(sent)
    versions = [r["model_version"] for r in recs if r["event_id"] in sent]
    first_new = versions.index(new_version)
    assert versions[:first_new] == [model.version] * first_new
    assert versions[first_new:] == [new_version] * (len(versions) - first_new)
    assert 21 <= first_new <= 20 + 50  # 50 events 0.1 s apart: within 5 s of the announcement
    status, metrics = shop.get("/metrics.json")
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
    # The store's newest version is the broken one: the restarted worker serves the one before.
    assert recs[0]["model_version"] == "20990101T000000Z-000000" and len(recs[0]["items"]) == 20
    assert bought not in [i["item_id"] for i in recs[0]["items"]]
    status, last = shop.get("/recommendations/alice/")
    assert status == 200 and last["event_id"] == "a4"


def test_records_read_again_after_a_crash_get_their_lists_again(shop, truth_and_model):
    """A crash after an event's rows were written but before its list was sent leaves the
    committed offset behind the rows: rewinding it reproduces that state exactly."""
    _, model, _ = truth_and_model
    items = model.item_ids[20:23].tolist()
    first, second = _event("rd-1", "dave", "sd", items[0]), _event("rd-2", "dave", "sd", items[1], ts=T0 + 1)
    positions = shop.send(first, second, first)  # the third is a second copy of rd-1
    assert [r["event_id"] for r in shop.recommendations(2)] == ["rd-1", "rd-2"]
    shop.stop()
    partition, offset = positions[0]
    shop.rewind(partition, offset)
    shop.start()
    shop.send(_event("rd-3", "dave", "sd", items[2], ts=T0 + 2))
    again = shop.recommendations(3, timeout_s=120)
    assert [(r["event_id"], r["query_item_id"]) for r in again] == [
        ("rd-1", items[0]), ("rd-2", items[1]), ("rd-3", items[2])]
    assert all(len(r["items"]) == 20 for r in again)
    metrics = shop.get("/metrics.json")[1]
    assert metrics["incidents"]["read_again"] == 2
    assert metrics["events"]["duplicate"] == 1  # the copy lies past the newest applied offset
