"""The query API and the Prometheus metrics of a real worker process on the real broker.

One worker serves the module's tests, in order: a shopper's events go in,
``/recommend`` must then give the list the worker sent for the last of them
and the list scored offline from the same state (:func:`shared.state.apply_event`
and :func:`shared.scoring.score_events` on the worker's settings and model);
``/similar/`` answers from the model; ``/metrics`` parses and counts every
event sent.
"""
from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from worker_process import WorkerProcess

from batch.retrain import retrain
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.config import load_settings
from shared.events import parse_event
from shared.scoring import History, Request, ScoringParams, Session, score_events
from shared.signals import SignalWeights
from shared.state import StateRule, apply_event

T0 = 1_750_000_000_000
#: Every event this module sent, valid or not (the metrics must count them all).
SENT: list = []


@pytest.fixture(scope="module")
def model_and_path(tmp_path_factory):
    """A model trained on a small synthetic shop (well under a second here)."""
    columns, _ = generate_columns(20_000, seed=5, params=ShopParams(n_items=300, n_categories=6))
    settings = load_settings({}, als_factors=16, als_iterations=8, similar_k=40)
    return retrain(columns, tmp_path_factory.mktemp("store"),
                   params=TrainingParams.from_settings(settings), progress=False)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, model_and_path, tmp_path_factory, free_port):
    model, path = model_and_path
    worker = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("worker"), free_port())
    worker.store.mkdir(parents=True, exist_ok=True)
    os.symlink(path, worker.store / model.version)
    worker.start()
    deadline = time.monotonic() + 120
    while _answer(worker, "/health/")[0] != 200:
        assert worker.process.poll() is None and time.monotonic() < deadline, \
            worker.log.read_text()[-3000:]
        time.sleep(0.5)
    yield worker
    worker.close()


def _answer(worker: WorkerProcess, path: str) -> tuple[int | None, str, str]:
    """(status, content type, body) of ``path``; status None while nothing answers."""
    url = f"http://127.0.0.1:{worker.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()
    except OSError:
        return None, "", ""


def _json(worker: WorkerProcess, path: str, **params) -> tuple[int, dict]:
    status, _, body = _answer(worker, f"{path}?{urllib.parse.urlencode(params)}" if params else path)
    return status, json.loads(body)


def _send(worker: WorkerProcess, *events) -> list[tuple[int, int]]:
    SENT.extend(events)
    return worker.send(*events)


def _event(event_id, item, kind="view", ts=T0, user="ann", session="s1", **extra) -> dict:
    return {"event_id": event_id, "user_id": user, "session_id": session, "item_id": item,
            "type": kind, "ts": ts, **extra}


def _pairs(items: list[dict]) -> list[tuple[str, float]]:
    return [(i["item_id"], i["score"]) for i in items]


def test_recommend_gives_the_list_sent_for_the_last_event_and_the_offline_one(worker,
                                                                              model_and_path):
    model, _ = model_and_path
    items = model.item_ids[[3, 10, 42]].tolist()
    events = [_event("q1", items[0], dwell_ms=25_000),
              _event("q2", items[1], kind="buy", ts=T0 + 1_000, quantity=1),
              _event("q3", items[2], kind="click", ts=T0 + 2_000)]
    positions = _send(worker, *events)
    sent = worker.recommendations(3, timeout_s=90)[-1]
    assert sent["event_id"] == "q3" and sent["query_item_id"] == items[2]

    status, body = _json(worker, "/recommend", user="ann", item=items[2], session="s1")
    assert status == 200
    assert {key: body[key] for key in ("user_id", "session_id", "query_item_id", "strategy",
                                       "model_version")} == \
        {key: sent[key] for key in ("user_id", "session_id", "query_item_id", "strategy",
                                    "model_version")}
    assert _pairs(body["items"]) == _pairs(sent["items"]) and len(body["items"]) == 20
    assert items[1] not in [i["item_id"] for i in body["items"]]  # bought: filtered

    # The same state folded offline by the worker's rule, scored on its settings and model.
    settings = load_settings(worker.env)
    rule = StateRule.from_settings(settings).with_weights(SignalWeights.from_meta(model.meta))
    user = None
    for event, (partition, offset) in zip(events, positions):
        user = apply_event(parse_event(json.dumps(event).encode()), user, rule,
                           partition=partition, offset=offset)
    params = ScoringParams.from_settings(settings)
    offline = score_events(model, [Request(user.history, user.session("s1"), items[2])], params)[0]
    assert [i["item_id"] for i in body["items"]] == offline.item_ids(model)
    assert [i["score"] for i in body["items"]] == pytest.approx(offline.scores.tolist(), rel=1e-6)

    status, five = _json(worker, "/recommend", user="ann", item=items[2], session="s1", n=5)
    assert status == 200 and _pairs(five["items"]) == _pairs(sent["items"])[:5]


def test_an_unknown_user_gets_the_cold_start_list(worker, model_and_path):
    model, _ = model_and_path
    item = model.item_ids[7]
    status, body = _json(worker, "/recommend", user="nobody-here", item=item)
    assert status == 200 and body["user_id"] == "nobody-here" and body["session_id"] is None
    params = ScoringParams.from_settings(load_settings(worker.env))
    cold = score_events(model, [Request(History(), Session(), item)], params)[0]
    assert [i["item_id"] for i in body["items"]] == cold.item_ids(model)
    assert body["strategy"] == cold.strategy


def test_bad_parameters_are_400_with_the_reason(worker):
    assert _json(worker, "/recommend", user="ann") == (400, {"error": "'item' is required"})
    status, body = _json(worker, "/recommend", user="ann", item="x", n=1000)
    assert status == 400 and body["error"].startswith("'n' must be an integer from 1 to 100")


def test_similar_answers_the_models_neighbour_list_and_404_for_an_unknown_item(worker,
                                                                              model_and_path):
    model, _ = model_and_path
    row = 10
    status, body = _json(worker, f"/similar/{model.item_ids[row]}", n=5)
    assert status == 200 and body["model_version"] == model.version
    assert [i["item_id"] for i in body["items"]] == model.item_ids[model.similar_items[row][:5]].tolist()
    assert _json(worker, "/similar/not-an-item")[0] == 404


def test_metrics_parse_and_count_every_event_sent(worker, model_and_path):
    model, _ = model_and_path
    positions = _send(worker, b"{not json", _event("q4", model.item_ids[5], ts=T0 + 3_000))
    assert worker.recommendations(1)[0]["event_id"] == "q4"

    deadline = time.monotonic() + 30
    while True:
        status, content_type, text = _answer(worker, "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        events = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
                  if name == "recsys_events_total"}
        if sum(events.values()) == len(SENT) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert events == {"recommended": len(SENT) - 1, "no_model": 0, "dead_letter": 1,
                      "duplicate": 0}
    assert samples[("recsys_lists_sent_total", ())] == len(SENT) - 1
    assert samples[("recsys_dead_letters_total", (("code", "not_json"),))] == 1
    assert samples[("recsys_model_info", (("version", model.version),))] == 1
    assert samples[("recsys_event_latency_seconds_count", ())] == len(SENT)
    lag = {int(dict(labels)["partition"]): value for (name, labels), value in samples.items()
           if name == "recsys_consumer_lag"}
    assert {partition for partition, _ in positions} <= set(lag) and sum(lag.values()) == 0

    status, snapshot = _json(worker, "/metrics.json")
    assert status == 200 and snapshot["events"] == {k: v for k, v in events.items() if v}
