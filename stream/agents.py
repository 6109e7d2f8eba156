"""The worker's agent: event -> state -> fold-in and scoring -> recommendation.

Per event, in the event's partition:

1. parse and validate; a bad event goes to ``events-dlq`` with its reason;
2. skip it when its ``event_id`` was already applied (redelivery after a crash);
3. add it to the user's history and the session (``users``, ``sessions`` tables);
4. score with :func:`shared.scoring.score_event` (fold-in, candidates, blend,
   filters, fall-backs: the same function evaluation calls);
5. send the list to ``recommendations``, keyed by user id.

A model announced on ``model-updates`` is loaded beside the running agent and
swapped in between two events (:mod:`stream.model_cache`).
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import EventError, parse_event
from shared.messages import (MessageError, dead_letter, parse_model_update,
                             recommendation_message)
from shared.scoring import (History, Session, add_shown, add_to_history, add_to_session,
                            score_event)
from stream.app import (app, dlq_topic, events_topic, limits, models, recommendations_topic,
                        scoring, sessions, settings, users, weights)
from stream.metrics import WorkerMetrics

log = logging.getLogger(__name__)
metrics = WorkerMetrics(window=2000)

#: Event ids remembered per user to drop redelivered events.
RECENT_EVENT_IDS = 64
BUY = "buy"
#: Error code of an event that parsed but could not be processed.
PROCESSING_ERROR = "processing_error"


def apply_event(event, user_row: dict | None, session_row: dict | None):
    """The state change and the list for one valid event; pure, for the agent and its tests.

    Returns
    -------
    (dict, dict, Recommendation or None) or None
        New ``users`` and ``sessions`` rows and the list (None without a
        model); None when the event was already applied.
    """
    user_row = user_row or {}
    recent = user_row.get("recent", [])
    if event.event_id in recent:
        return None
    model = models.model
    signals = models.weights or weights
    preference = signals.preference_one(event.type_code, event.dwell_ms)
    history = History.from_dict(user_row.get("history"))
    if preference > 0:  # as in the training matrix: an event weighted 0 is no positive
        history = add_to_history(
            history, event.item_id, signals.confidence(preference), event.ts_ms,
            history_max=scoring.history_max, decay_half_life_s=scoring.decay_half_life_s,
            bought=event.type == BUY)
    session = add_to_session(Session.from_dict(session_row), event.item_id,
                             max_len=scoring.session_max)
    rec = None
    if model is not None:
        rec = score_event(model, history, session, event.item_id, scoring,
                          query_category=event.category)
        if scoring.filter_shown:
            session = add_shown(session, rec.item_ids(model), max_len=scoring.session_max)
    new_user = {"history": history.to_dict(),
                "recent": (recent + [event.event_id])[-RECENT_EVENT_IDS:],
                "last": user_row.get("last")}
    return new_user, session.to_dict(), rec


def recommendation_for(event, rec) -> bytes:
    """The ``recommendations`` message for ``event``; an empty ``no_model`` list before any model."""
    model = models.model
    items = [] if rec is None else list(zip(rec.item_ids(model), rec.scores.tolist()))
    return recommendation_message(
        user_id=event.user_id, session_id=event.session_id, event_id=event.event_id,
        query_item_id=event.item_id, items=items,
        strategy="no_model" if rec is None else rec.strategy,
        model_version=models.version)


async def _dead_letter(message, error: EventError) -> None:
    metrics.dlq_codes[error.code] += 1
    await dlq_topic.send(key=message.key, value=dead_letter(
        message.value, error, topic=message.topic, partition=message.partition,
        offset=message.offset))


@app.agent(events_topic)
async def process_events(stream):
    """Turn each event on ``events`` into a recommendation (see the module docstring)."""
    async for event_ in stream.events():
        message = event_.message
        outcome = await _process(message)
        produced_ms = message.timestamp * 1000.0 if message.timestamp_type == 0 else None
        metrics.observe(outcome, message.topic, message.partition, message.offset, produced_ms)


async def _process(message) -> str:
    try:
        event = parse_event(message.value, **vars(limits))
    except EventError as error:
        await _dead_letter(message, error)
        return "dead_letter"
    try:
        applied = apply_event(event, users.get(event.user_id), sessions.get(event.session_id))
        if applied is None:
            return "duplicate"
        user_row, session_row, rec = applied
        value = recommendation_for(event, rec)
        user_row["last"] = value.decode()
    except Exception as exc:  # a bug must not stop the stream: the event goes to the DLQ
        log.exception("processing event %s failed", event.event_id)
        await _dead_letter(message, EventError(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"))
        return "dead_letter"
    users[event.user_id] = user_row
    sessions[event.session_id] = session_row
    await recommendations_topic.send(key=event.user_id.encode(), value=value)
    return "recommended" if rec is not None else "no_model"


@app.task
async def watch_models() -> None:
    """Follow ``model-updates`` and swap in each new version (the worker loads the newest first)."""
    loop = asyncio.get_running_loop()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(settings.model_updates_topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        while not app.should_stop:
            batches = await consumer.getmany(timeout_ms=int(settings.model_poll_s * 1000))
            for record in (r for records in batches.values() for r in records):
                try:
                    update = parse_model_update(record.value)
                except MessageError as exc:
                    log.error("ignoring malformed model update at offset %d: %s", record.offset, exc)
                    continue
                started = time.perf_counter()
                if await loop.run_in_executor(None, models.offer, update["version"], update["path"]):
                    log.info("model %s ready in %.2f s", update["version"],
                             time.perf_counter() - started)
    finally:
        await consumer.stop()
