"""The worker's HTTP views: a user's latest recommendations, health and metrics."""
from __future__ import annotations

from faust.types import TP

from stream.agents import latest, metrics
from stream.app import app, models, settings, users


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


@app.page("/metrics/")
async def worker_metrics(web, request):
    """Events processed by outcome, dead letters by code, latency percentiles, lag, model.

    ``uncommitted`` counts, per partition, the events handled past its
    committed offset: they are read again if the worker dies now.
    """
    snapshot = metrics.snapshot(model_version=models.version, lag=metrics.lag(_highwater))
    committed = app.consumer._committed_offset
    snapshot["uncommitted"] = {
        f"{topic}/{partition}": read + 1 - committed.get((topic, partition), 0)
        for (topic, partition), read in sorted(metrics.read_offsets.items())
        if committed.get((topic, partition)) is not None}
    snapshot["models_refused"] = models.refused
    return web.json(snapshot)
