"""The query and metrics views of the worker, asked in this process.

The worker's Faust app is configured at import (``stream.app``). Requests are
resolved by its web server's router and handed to the views without
starting the server (aiohttp ties a server to one event loop, and
``test_web_exposure.py`` starts it in this process) and without the rest of
the app (no broker, no tables): the parameters' 400s, the model's 503 and
404, ``/similar/`` on a model set by the test, and the content type of
``/metrics``. ``tests/integration/test_query_api.py`` asks a real worker
process.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_exceptions import HTTPException
from prometheus_client.parser import text_string_to_metric_families

from shared.scoring.example import _example_model


@pytest.fixture(scope="module")
def app():
    import stream.views  # noqa: F401  (registers the worker's views on the app)
    from stream.app import app

    return app


@pytest.fixture
def get(app):
    """``get(paths, model=None)``: {path: (status, content type, body text)}, with ``model``
    served meanwhile."""
    from stream.app import models

    router = app.web.web_app.router

    async def answer(path: str):
        request = make_mocked_request("GET", path)
        match = await router.resolve(request)
        request._match_info = match
        try:
            response = await match.handler(request)
        except HTTPException as exc:  # the router's own 404 for a path no view takes
            return exc.status, exc.content_type, exc.text
        return response.status, response.headers["Content-Type"], response.body.decode()

    def run(paths, model=None):
        served, models.model = models.model, model
        try:
            return {path: asyncio.run(answer(path)) for path in paths}
        finally:
            models.model = served

    return run


def test_bad_parameters_are_400_with_one_line_before_any_routing(get):
    answers = get(["/recommend", "/recommend?user=u1", "/recommend?user=u1&item=i1&n=0",
                   "/recommend?user=u1&item=i1&n=101", "/recommend?user=u1&user=u2&item=i1",
                   "/recommend?user=u1&item=i1&x=1", "/recommend?user=u%0A1&item=i1",
                   "/similar/i0?n=abc", "/similar/i0?m=1"], model=_example_model())
    reasons = {path: json.loads(body)["error"] for path, (status, _, body) in answers.items()
               if status == 400}
    assert list(reasons) == list(answers)
    assert reasons["/recommend"] == "'user' is required"
    assert reasons["/recommend?user=u1&item=i1&n=101"] == \
        "'n' must be an integer from 1 to 100, got '101'"
    assert reasons["/recommend?user=u%0A1&item=i1"] == \
        "'user' contains the control character U+000A at index 1"
    assert all("\n" not in reason for reason in reasons.values())


def test_similar_answers_from_the_model_and_404_for_an_unknown_item(get):
    answers = get(["/similar/i0", "/similar/i3?n=1", "/similar/nope", "/similar/a/b"],
                  model=_example_model())
    status, content_type, body = answers["/similar/i0"]
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == {"query_item_id": "i0", "model_version": "example",
                                "items": [{"item_id": "i1", "score": 0.99},
                                          {"item_id": "i2", "score": 0.2}]}
    assert [i["item_id"] for i in json.loads(answers["/similar/i3?n=1"][2])["items"]] == ["i2"]
    assert answers["/similar/nope"][0] == 404
    assert json.loads(answers["/similar/nope"][2])["error"] == \
        "item 'nope' is not in model example"
    # An id with a slash is an id (the model does not know this one), not another path.
    assert json.loads(answers["/similar/a/b"][2])["error"] == "item 'a/b' is not in model example"


def test_without_a_model_the_query_views_are_503_with_the_reason(get):
    answers = get(["/similar/i0"])
    assert answers["/similar/i0"][0] == 503
    assert json.loads(answers["/similar/i0"][2])["status"] == "no_model"


def test_metrics_is_the_prometheus_text_and_metrics_json_the_snapshot(get):
    answers = get(["/metrics", "/metrics.json", "/metrics/"])
    status, content_type, body = answers["/metrics"]
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"recsys_events", "recsys_lists_sent", "recsys_dead_letters", "recsys_model_loaded",
            "recsys_consumer_lag", "recsys_event_latency_seconds"} <= names
    status, _, body = answers["/metrics.json"]
    assert status == 200 and {"events", "dead_letters", "consumer_lag"} <= set(json.loads(body))
    assert answers["/metrics/"][0] == 404  # moved to /metrics.json
