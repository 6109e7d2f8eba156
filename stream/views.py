"""The worker's HTTP views: a user's latest recommendations, health and metrics."""
from __future__ import annotations

from stream.agents import latest, metrics
from stream.app import app, models, users


def _highwater(topic: str, partition: int) -> int | None:
    from faust.types import TP
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
    """``ok`` with the model version when a model is served, ``no_model`` (503) before."""
    if models.model is None:
        return web.json({"status": "no_model", "model_version": None}, status=503)
    return web.json({"status": "ok", "model_version": models.version})


@app.page("/metrics/")
async def worker_metrics(web, request):
    """Events processed by outcome, dead letters by code, latency percentiles, lag, model."""
    snapshot = metrics.snapshot(model_version=models.version, lag=metrics.lag(_highwater))
    snapshot["models_refused"] = models.refused
    return web.json(snapshot)
