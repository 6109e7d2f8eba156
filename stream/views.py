"""The worker's HTTP views: recommendations on request, a user's latest list, health, metrics.

``/recommend`` and ``/recommendations/{user_id}/`` answer from a user's row
and lists, which live on the worker that owns the user's partition: Faust's
table routing (``@app.table_route``) forwards the request there, so any
worker answers. ``/similar/{item}`` reads the model, which every worker
holds. What the query views compute is in :mod:`stream.query`; the
Prometheus text of ``/metrics`` in :mod:`stream.prometheus`. A query is
scored on the event loop, which the agent gives up only between two events:
it reads the row and the model as they are then, never half-written, and
writes nothing.
"""
from __future__ import annotations

from dataclasses import replace

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from shared.scoring import score_events
from stream import prometheus
from stream.agents import latest, metrics, user_rows
from stream.app import app, limits, models, scoring, settings, users
from stream.query import (QueryError, RecommendQuery, parse_recommend, parse_similar,
                          recommend_body, recommend_request, similar_body)


def _highwater(topic: str, partition: int) -> int | None:
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:  # the consumer is not assigned this partition (any more)
        return None


@app.page("/recommendations/{user_id}/")
@app.table_route(table=users, match_info="user_id")
async def latest_recommendations(web, request, user_id: str):
    """The latest recommendation message this worker sent for ``user_id`` (404 when none)."""
    value = latest.get(user_id)
    if value is None:
        return web.json({"error": f"no recommendations sent for user {user_id!r} "
                                  f"since this worker started"}, status=404)
    return web.bytes(value, content_type="application/json")


@app.page("/health/")
async def health(web, request):
    """200 ``ok`` while the worker serves; 503 with the reason otherwise.

    ``no_model`` before a model is loaded; ``recovering`` while a rebalance or
    the tables' recovery runs (nothing is processed then); ``stalled`` when a
    partition has had unread events and no progress for ``RECSYS_STALL_S``, or
    events handled past a committed offset that has not moved for that long
    (``stalled_partitions`` names them). A worker whose agent fails exits, so
    an orchestrator restarts it.
    """
    body = {"model_version": models.version}
    if app.rebalancing or getattr(app, "in_recovery", False):
        return web.json({"status": "recovering", **body}, status=503)
    if models.model is None:
        return web.json({"status": "no_model", **body}, status=503)
    stalled = metrics.stalled(_assigned_lag(), settings.stall_s)
    stalled += [p for p in metrics.commit_stalled(settings.stall_s) if p not in stalled]
    if stalled:
        return web.json({"status": "stalled", "stalled_partitions": stalled, **body}, status=503)
    return web.json({"status": "ok", **body})


@app.timer(interval=5.0)
async def sample_commits() -> None:
    """Sample the committed offsets of the assigned events partitions (for /health/)."""
    consumer = app.consumer
    metrics.sample_commits({(tp.topic, tp.partition): consumer._committed_offset.get(tp)
                            for tp in consumer.assignment() if tp.topic == settings.events_topic})


def _assigned_lag() -> dict[tuple[str, int], int]:
    """Unread events per assigned partition of the events topic."""
    lags = {}
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic != settings.events_topic:
            continue
        end = _highwater(tp.topic, tp.partition)
        read = metrics.read_offsets.get((tp.topic, tp.partition))
        start = read + 1 if read is not None else consumer._committed_offset.get(tp)
        if end is not None and start is not None:
            lags[(tp.topic, tp.partition)] = max(0, end - start)
    return lags


def _uncommitted() -> dict[tuple[str, int], int]:
    """Events handled past the committed offset, per partition read since start."""
    committed = app.consumer._committed_offset
    return {(topic, partition): read + 1 - committed[(topic, partition)]
            for (topic, partition), read in sorted(metrics.read_offsets.items())
            if committed.get((topic, partition)) is not None}


@app.page("/metrics.json")
async def worker_metrics(web, request):
    """Events processed by outcome, dead letters by code, latency percentiles, lag, model.

    ``uncommitted`` counts, per partition, the events handled past its
    committed offset: they are read again if the worker dies now.
    """
    snapshot = metrics.snapshot(model_version=models.version, lag=metrics.lag(_highwater))
    snapshot["uncommitted"] = {f"{topic}/{partition}": count
                               for (topic, partition), count in _uncommitted().items()}
    snapshot["models_refused"] = models.refused
    return web.json(snapshot)


def _lag_if_consuming() -> dict[tuple[str, int], int]:
    """:func:`_assigned_lag`, or nothing while the consumer has not started (no partitions)."""
    try:
        return _assigned_lag()
    except ConsumerNotStarted:
        return {}


#: This worker's Prometheus registry (its own, not prometheus_client's global one).
registry = prometheus.worker_registry(metrics, models, lag=_lag_if_consuming,
                                      uncommitted=_uncommitted)


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """The worker's metrics in Prometheus' text format, version 0.0.4 (``docs/operations.md``)."""
    return web.bytes(prometheus.exposition(registry),
                     headers={"Content-Type": prometheus.CONTENT_TYPE})


def _not_serving(web, *, rows: bool = True):
    """The 503 answer when this worker cannot answer now: no model, or (``rows``) its tables
    moving or recovering, when a row read may not be the worker's; None when it can."""
    if rows and (app.rebalancing or getattr(app, "in_recovery", False)):
        return web.json({"status": "recovering", "error": "a rebalance or the tables' recovery "
                         "is running; ask again in a few seconds"}, status=503)
    if models.model is None:
        return web.json({"status": "no_model", "error": "no model is loaded yet (retrain and "
                         "announce one)"}, status=503)
    return None


@app.page("/recommend")
async def recommend(web, request):
    """The list for ``user`` looking at ``item`` now (:mod:`stream.query`), from the worker
    that owns the user; 400 with the reason for a bad parameter."""
    try:
        query = parse_recommend(request.query.items(), max_id_chars=limits.max_id_chars,
                                max_category_chars=limits.max_category_chars)
    except QueryError as exc:
        return web.json({"error": str(exc)}, status=400)
    return await _recommend_here(web, request, query)


@app.table_route(table=users, query_param="user")
async def _recommend_here(web, request, query: RecommendQuery):
    """Score the query on this worker, the owner of the user's partition."""
    refusal = _not_serving(web)
    if refusal is not None:
        return refusal
    model = models.model
    params = scoring if query.n is None else replace(scoring, n=query.n)
    rec = score_events(model, [recommend_request(user_rows.peek(query.user.encode()), query)],
                       params)[0]
    return web.json(recommend_body(model, rec, query))


@app.page("/similar/{item:.+}")
async def similar(web, request, item: str):
    """The item's neighbour list in the model served (:func:`stream.query.similar_body`);
    404 for an item the model does not know."""
    try:
        n = parse_similar(request.query.items(), default_n=settings.n_recommendations)
    except QueryError as exc:
        return web.json({"error": str(exc)}, status=400)
    refusal = _not_serving(web, rows=False)
    if refusal is not None:
        return refusal
    model = models.model
    body = similar_body(model, item, n)
    if body is None:
        return web.json({"error": f"item {item[:130]!r} is not in model {model.version}"},
                        status=404)
    return web.json(body)
