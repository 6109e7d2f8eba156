"""The worker's agent: event -> state -> fold-in and scoring -> recommendation.

Per event, while Faust holds it as the current event (table writes need it):

1. parse and validate; a bad event goes to ``events-dlq`` with its reason;
2. when the event was already applied, apply nothing: a later copy of it
   (same id, produced twice) is dropped; a record read again (at or before
   the user's newest applied offset, after a crash or a rebalance before its
   offset was committed) is scored again from the current rows, since its
   list may never have been sent (:meth:`UserState.seen`);
3. add it to the user's history and the session, and write the ``users`` and
   ``sessions`` rows.

The events read so far form a micro-batch. It ends when no further event is
waiting in the stream's queue, or at ``batch_max`` events; then:

4. every event of the batch is scored with :func:`shared.scoring.score_events`
   (fold-in, candidates, blend, filters, fall-backs: the function evaluation
   calls), each from the state *after its own event*, so a user with two
   events in one batch gets exactly the lists of two separate steps;
5. the lists go to ``recommendations``, keyed by user id, and only then are
   the batch's events acknowledged: Faust commits an offset only once it is
   acknowledged and the producer is flushed. A crash can come after an
   event's rows were written but before its list was sent; the record is
   read again after the restart and step 2 sends its list then. Lists are
   at least once: a consumer that must see each event's list once drops an
   ``event_id`` it has seen.

At low rates the queue is empty after every event and a batch is one event,
so batching adds no latency; under load batches grow and the per-event cost
of scoring and sending falls. With ``filter_shown`` the session row must
carry the items shown, so each event is scored before its rows are written.

A model announced on ``model-updates`` is loaded beside the running agent and
swapped in between two batches (:mod:`stream.model_cache`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import Event, EventError, parse_event
from shared.messages import (MessageError, dead_letter, parse_model_update,
                             recommendation_message)
from shared.scoring import (History, Recommendation, Session, add_shown, add_to_history,
                            add_to_session, score_events)
from stream.app import (app, events_topic, limits, models, scoring, sessions, settings, users,
                        weights)
from stream.metrics import WorkerMetrics
from stream.tables import RowCache

log = logging.getLogger(__name__)
metrics = WorkerMetrics(window=2000)

#: Event ids remembered per user to drop redelivered events.
RECENT_EVENT_IDS = 64
BUY = "buy"
#: Error code of an event that parsed but could not be processed.
PROCESSING_ERROR = "processing_error"
#: How often a pending micro-batch is checked for an agent waiting on an empty queue.
BATCH_WAIT_S = 0.005


class LatestLists:
    """The latest list sent per user (message bytes), the most recent ``size`` users.

    >>> latest = LatestLists(2)
    >>> latest.put("a", b"1"); latest.put("b", b"2"); latest.put("a", b"3"); latest.put("c", b"4")
    >>> latest.get("a"), latest.get("b"), latest.get("c")
    (b'3', None, b'4')
    """

    def __init__(self, size: int):
        self.size = size
        self._lists: OrderedDict[str, bytes] = OrderedDict()

    def put(self, user_id: str, value: bytes) -> None:
        """Remember ``value`` as ``user_id``'s latest list."""
        lists = self._lists
        lists[user_id] = value
        lists.move_to_end(user_id)
        if len(lists) > self.size:
            lists.popitem(last=False)

    def get(self, user_id: str) -> bytes | None:
        """The latest list sent for ``user_id``, or None."""
        return self._lists.get(user_id)


latest = LatestLists(settings.latest_lists)


@dataclass(frozen=True, slots=True)
class UserState:
    """A ``users`` row: the user's history, the ids of their latest events (newest last),
    and where the newest applied event was read: its ``offset`` on ``events`` in the
    ``partition`` that holds the user (-1: unknown)."""

    history: History = History()
    recent: tuple = ()
    offset: int = -1
    partition: int = -1

    def seen(self, event_id: str, partition: int, offset: int) -> str | None:
        """What reading ``event_id`` at ``offset`` in ``partition`` is for this user's row.

        None: an event not applied yet. ``"read_again"``: a record at or before
        the newest one applied, read again after a crash or a rebalance (it was
        handled when first read; a copy that came before the user's newest
        event is one too, and gets a list again). ``"copy"``: a later record
        with the id of an applied event (produced twice).

        >>> user = UserState(recent=("a", "b"), offset=9, partition=2)
        >>> [user.seen("c", 2, 10), user.seen("b", 2, 9), user.seen("b", 2, 12), user.seen("z", 2, 3)]
        [None, 'read_again', 'copy', 'read_again']
        """
        if partition == self.partition and 0 <= offset <= self.offset:
            return "read_again"
        return "copy" if event_id in self.recent else None


def encode_user(user: UserState) -> bytes:
    """The ``users`` row as stored: ``{"history": History.to_dict(), "recent": [event ids],
    "offset": offset, "partition": partition}``."""
    return orjson.dumps({"history": user.history.to_dict(), "recent": list(user.recent),
                         "offset": user.offset, "partition": user.partition})


def decode_user(value: bytes) -> UserState:
    """The inverse of :func:`encode_user`; a row written before offsets were kept has -1."""
    row = orjson.loads(value)
    return UserState(History.from_dict(row.get("history")), tuple(row.get("recent", ())),
                     row.get("offset", -1), row.get("partition", -1))


def encode_session(session: Session) -> bytes:
    """The ``sessions`` row as stored: ``Session.to_dict()``."""
    return orjson.dumps(session.to_dict())


def decode_session(value: bytes) -> Session:
    """The inverse of :func:`encode_session`."""
    return Session.from_dict(orjson.loads(value))


user_rows = RowCache(users, decode_user, encode_user, settings.row_cache)
session_rows = RowCache(sessions, decode_session, encode_session, settings.row_cache)


def apply_event(event: Event, user: UserState | None, session: Session | None, *,
                partition: int = -1, offset: int = -1) -> tuple[UserState, Session] | None:
    """The state after one valid event, read at ``offset`` in ``partition``; pure.

    Returns
    -------
    (UserState, Session) or None
        The user's and the session's rows after the event; None when the
        event was already applied or handled (:meth:`UserState.seen`).
    """
    user = user or UserState()
    if user.seen(event.event_id, partition, offset) is not None:
        return None
    signals = models.weights or weights
    preference = signals.preference_one(event.type_code, event.dwell_ms)
    history = user.history
    if preference > 0:  # as in the training matrix: an event weighted 0 is no positive
        history = add_to_history(
            history, event.item_id, signals.confidence(preference), event.ts_ms,
            history_max=scoring.history_max, decay_half_life_s=scoring.decay_half_life_s,
            bought=event.type == BUY)
    session = add_to_session(session or Session(), event.item_id, max_len=scoring.session_max)
    return UserState(history, (user.recent + (event.event_id,))[-RECENT_EVENT_IDS:],
                     offset, partition), session


def recommendation_for(event: Event, rec: Recommendation | None, model, version) -> bytes:
    """The ``recommendations`` message for ``event``; an empty ``no_model`` list before any model."""
    items = [] if rec is None else list(zip(rec.item_ids(model), rec.scores.tolist()))
    return recommendation_message(
        user_id=event.user_id, session_id=event.session_id, event_id=event.event_id,
        query_item_id=event.item_id, items=items,
        strategy="no_model" if rec is None else rec.strategy, model_version=version)


@dataclass(slots=True)
class _Step:
    """One event of a micro-batch: what it became, and what its list is scored from."""

    faust_event: object
    outcome: str
    event: Event | None = None
    history: History | None = None
    session: Session | None = None
    rec: Recommendation | None = None

    @property
    def request(self) -> tuple:
        """What :func:`shared.scoring.score_events` scores this event's list from."""
        return self.history, self.session, self.event.item_id, self.event.category


def _produce(topic: str, key: bytes | None, value: bytes) -> None:
    app.producer.produce(topic, key, value, None, _on_delivery)


def _on_delivery(err, msg) -> None:
    if err is not None:
        metrics.incidents["send_failed"] += 1
        log.error("message to %s not delivered: %s", msg.topic(), err)


def _dead_letter(message, error: EventError) -> None:
    metrics.dlq_codes[error.code] += 1
    _produce(settings.dlq_topic, message.key, dead_letter(
        message.value, error, topic=message.topic, partition=message.partition,
        offset=message.offset))


def _processing_error(message, exc: Exception) -> None:
    _dead_letter(message, EventError(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"))


def _apply(faust_event) -> _Step:
    """Steps 1-3 of the module docstring for the current event."""
    message = faust_event.message
    try:
        event = parse_event(message.value, **vars(limits))
    except EventError as error:
        _dead_letter(message, error)
        return _Step(faust_event, "dead_letter")
    try:
        user_key, session_key = event.user_id.encode(), event.session_id.encode()
        user, session = user_rows.get(user_key), session_rows.get(session_key)
        state = apply_event(event, user, session, partition=message.partition,
                            offset=message.offset)
        if state is None:
            if user.seen(event.event_id, message.partition, message.offset) == "copy":
                return _Step(faust_event, "duplicate")
            metrics.incidents["read_again"] += 1
            return _Step(faust_event, "scored", event, user.history, session or Session())
        user, session = state
        step = _Step(faust_event, "scored", event, user.history, session)
        if scoring.filter_shown and models.model is not None:
            model = models.model
            step.rec = score_events(model, [step.request], scoring)[0]
            step.session = session = add_shown(session, step.rec.item_ids(model),
                                               max_len=scoring.session_max)
        user_rows.set(user_key, user)
        session_rows.set(session_key, session)
        return step
    except Exception as exc:  # a bug must not stop the stream: the event goes to the DLQ
        log.exception("processing event %s failed", event.event_id)
        _processing_error(message, exc)
        return _Step(faust_event, "dead_letter")


def _finish(batch: list[_Step]) -> None:
    """Steps 4-5 of the module docstring: score the batch and send its lists."""
    model, version = models.model, models.version
    to_score = [s for s in batch if s.outcome == "scored" and s.rec is None]
    if model is not None and to_score:
        try:
            recs = score_events(model, [s.request for s in to_score], scoring)
        except Exception:  # one bad state must not cost the batch: find it event by event
            recs = [_score_one(model, s) for s in to_score]
        for step, rec in zip(to_score, recs):
            step.rec = rec
    topic = settings.recommendations_topic
    for step in batch:
        if step.outcome != "scored":
            continue
        if step.rec is None and model is not None:  # its scoring failed (logged)
            step.outcome = "dead_letter"
            continue
        event = step.event
        value = recommendation_for(event, step.rec, model, version)
        _produce(topic, event.user_id.encode(), value)
        latest.put(event.user_id, value)
        step.outcome = "recommended" if step.rec is not None else "no_model"


def _score_one(model, step: _Step) -> Recommendation | None:
    try:
        return score_events(model, [step.request], scoring)[0]
    except Exception as exc:
        log.exception("scoring event %s failed", step.event.event_id)
        _processing_error(step.faust_event.message, exc)
        return None


class _MicroBatch:
    """The events read and applied but not yet scored, sent and acknowledged.

    :meth:`flush` runs without yielding to the event loop, so a batch is
    either wholly pending or wholly done. The agent flushes when the
    stream's queue is empty after an event, or at ``batch_max`` events. A
    batch can still be left pending while the agent waits: a rebalance or a
    stop clears the queue under it, and Faust then waits for the pending
    events' acknowledgements. A timer checks every ``BATCH_WAIT_S`` and
    flushes such a batch once the queue is empty; while events are queued,
    the agent is about to read them and the timer leaves the batch alone, so
    under load batches grow to ``batch_max``.
    """

    def __init__(self, stream):
        self.stream, self.queue = stream, stream.channel.queue
        self.steps: list[_Step] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, step: _Step) -> None:
        """Add the step of the current event."""
        self.steps.append(step)

    def flush_later(self) -> None:
        """Make sure the pending steps are flushed once the agent waits with an empty queue."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_WAIT_S, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self.steps:
            return
        if self.queue.empty():
            asyncio.get_running_loop().create_task(self.flush())
        else:
            self.flush_later()

    async def flush(self) -> None:
        """Score, send and acknowledge the pending steps."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        steps, self.steps = self.steps, []
        if not steps:
            return
        _finish(steps)
        for step in steps:
            message = step.faust_event.message
            produced_ms = message.timestamp * 1000.0 if message.timestamp_type == 0 else None
            metrics.observe(step.outcome, message.topic, message.partition, message.offset,
                            produced_ms)
            await self.stream.ack(step.faust_event)
        metrics.batches += 1


@app.agent(events_topic)
async def process_events(stream):
    """Turn each event on ``events`` into a recommendation (see the module docstring)."""
    events = stream.noack()
    batch = _MicroBatch(events)
    try:
        async for faust_event in events.events():
            batch.add(_apply(faust_event))
            if len(batch.steps) >= settings.batch_max or batch.queue.empty():
                await batch.flush()
            else:
                batch.flush_later()
    finally:
        await batch.flush()


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
