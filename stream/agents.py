"""The worker's agent: event -> state -> fold-in and scoring -> recommendation.

Per event, while Faust holds it as the current event (table writes need it):

1. parse and validate; a bad event goes to ``events-dlq`` with its reason;
2. when the event was already applied, apply nothing: a later copy of it
   (same id, produced twice) is dropped; a record read again (at or before
   the user's newest applied offset, after a crash or a rebalance before its
   offset was committed) is scored again from the current rows, since its
   list may never have been sent (:meth:`shared.state.UserState.seen`);
3. add it to the user's history and the session (:func:`shared.state.apply_event`);
   the new ``users`` row, which holds both, is kept with the micro-batch, and
   the user's next event in the batch starts from it.

The events read so far form a micro-batch. It ends when no further event is
waiting in the stream's queue, or at ``batch_max`` events; then:

4. the batch's rows are written, each user's newest once: one changelog
   message per user and one RocksDB write batch per partition, as Kafka
   Streams' record cache does (the changelog is compacted, so only the
   newest value of a key matters to a recovery);
5. every event of the batch is scored with :func:`shared.scoring.score_events`
   (fold-in, candidates, blend, filters, fall-backs: the function evaluation
   calls), each from the state *after its own event*, so a user with two
   events in one batch gets exactly the lists of two separate steps;
6. the lists go to ``recommendations``, keyed by user id, and only then are
   the batch's events acknowledged: Faust commits an offset only once it is
   acknowledged and the producer is flushed. A crash can come after an
   event's rows were written but before its list was sent; the record is
   read again after the restart and step 2 sends its list then. A crash
   before the rows are written loses nothing either: none of the batch's
   events was acknowledged, so all of them are read and applied again. Lists are
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
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import CrashingSupervisor

from shared import kafka_security
from shared.events import Event, EventError, check_key, parse_event
from shared.messages import MessageError, dead_letter, parse_model_update
from shared.scoring import History, Recommendation, Session, add_shown, score_events
from shared.state import StateRule, apply_event, decode_user, encode_user, with_session
from stream.app import app, events_topic, limits, models, scoring, settings, users
from stream.lists import LatestLists, recommendation_for
from stream.metrics import WorkerMetrics
from stream.tables import RowCache

log = logging.getLogger(__name__)
metrics = WorkerMetrics(window=2000)

#: Error code of an event that parsed but could not be processed.
PROCESSING_ERROR = "processing_error"
#: How often a pending micro-batch is checked for an agent waiting on an empty queue.
BATCH_WAIT_S = 0.005

#: The latest list sent per user, served by /recommendations/ (stream.views).
latest = LatestLists(settings.latest_lists)
#: The users table with its decoded rows cached in front (stream.tables.RowCache).
user_rows = RowCache(users, decode_user, encode_user, settings.row_cache)


class _Rules:
    """The event-to-state rule with the signal weights of the model being served."""

    def __init__(self, configured: StateRule):
        self.configured = configured
        self._weights, self._rule = None, configured

    def current(self) -> StateRule:
        if models.weights is not self._weights:
            self._weights, self._rule = models.weights, self.configured.with_weights(models.weights)
        return self._rule


rules = _Rules(StateRule.from_settings(settings))


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


def _apply(faust_event, rows: dict) -> _Step:
    """Steps 1-3 of the module docstring for the current event; ``rows`` holds the batch's
    new rows (user key -> (row, partition)), to be written when it ends.

    An error of the event's own (it cannot be parsed, its key is not its
    user, the rule or its scoring fails on it) sends it to the dead-letter
    topic. An error writing the rows is the worker's, not the event's: it
    propagates, the agent stops the worker, and the event, never
    acknowledged, is read again after the restart.
    """
    message = faust_event.message
    try:
        event = parse_event(message.value, **vars(limits))
        check_key(event, message.key)
    except EventError as error:
        _dead_letter(message, error)
        return _Step(faust_event, "dead_letter")
    key = event.user_id.encode()
    try:
        step, row = _next_rows(faust_event, event, rows.get(key, (None,))[0])
    except Exception as exc:
        log.exception("processing event %s failed", event.event_id)
        _processing_error(message, exc)
        return _Step(faust_event, "dead_letter")
    if row is not None:
        rows[key] = (row, message.partition)
    return step


def _next_rows(faust_event, event: Event, staged=None):
    """The event's step, and the row to write (None: nothing to write); ``staged`` is the
    user's row as the batch left it (None: as the table holds it)."""
    return _step_and_row(faust_event, event,
                         staged if staged is not None else user_rows.get(event.user_id.encode()))


def _step_and_row(faust_event, event: Event, user):
    """:func:`_next_rows` from the user's current row (None: a new user).

    A record read again writes its user's row unchanged: the row may hold the
    event only in this worker's store, its changelog message lost with the
    worker that wrote it, and the changelog must hold what the store holds.
    """
    message, rule = faust_event.message, rules.current()
    new = apply_event(event, user, rule, partition=message.partition, offset=message.offset)
    if new is None:
        if user.seen(event.event_id, message.partition, message.offset) == "copy":
            return _Step(faust_event, "duplicate"), None
        metrics.incidents["read_again"] += 1
        return _Step(faust_event, "scored", event, user.history,
                     user.session(event.session_id)), user
    session = new.session(event.session_id)
    step = _Step(faust_event, "scored", event, new.history, session)
    if scoring.filter_shown and models.model is not None:
        model = models.model
        step.rec = score_events(model, [step.request], scoring)[0]
        step.session = add_shown(session, step.rec.item_ids(model), max_len=scoring.session_max)
        new = replace(new, sessions=with_session(new.sessions, event.session_id, step.session,
                                                 rule))
    return step, new


def _finish(batch: list[_Step]) -> None:
    """Steps 5-6 of the module docstring: score the batch and send its lists.

    A list that cannot be scored or written as a message sends its event to
    the dead-letter topic; a failure to hand a message to the producer
    propagates (the worker stops, nothing is acknowledged).
    """
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
        try:
            value = recommendation_for(event, step.rec, model, version)
        except Exception as exc:
            log.exception("writing the list of event %s failed", event.event_id)
            _processing_error(step.faust_event.message, exc)
            step.outcome = "dead_letter"
            continue
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
        self.rows: dict[bytes, tuple[object, int]] = {}  # user key -> (new row, partition)
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
            asyncio.get_running_loop().create_task(self._flush_or_crash())
        else:
            self.flush_later()

    async def _flush_or_crash(self) -> None:
        """:meth:`flush` outside the agent: a failure stops the worker, as it would there."""
        try:
            await self.flush()
        except Exception as exc:
            log.exception("flushing a micro-batch failed")
            app._crash(exc)

    async def flush(self) -> None:
        """Write the pending rows, then score, send and acknowledge the pending steps."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        steps, self.steps = self.steps, []
        rows, self.rows = self.rows, {}
        if not steps:
            return
        if rows:
            user_rows.set_many([(key, row, partition) for key, (row, partition) in rows.items()])
            metrics.row_writes += len(rows)
        _finish(steps)
        for step in steps:
            message = step.faust_event.message
            produced_ms = message.timestamp * 1000.0 if message.timestamp_type == 0 else None
            metrics.observe(step.outcome, message.topic, message.partition, message.offset,
                            produced_ms)
            await self.stream.ack(step.faust_event)
        metrics.batches += 1


@app.agent(events_topic, supervisor_strategy=CrashingSupervisor)
async def process_events(stream):
    """Turn each event on ``events`` into a recommendation (see the module docstring).

    An exception that escapes (the rows or a message could not be written)
    stops the worker with a non-zero exit status instead of restarting the
    agent: a restarted agent would go on past the events in hand, and their
    offsets would be committed without their lists.
    """
    events = stream.noack()
    batch = _MicroBatch(events)
    try:
        async for faust_event in events.events():
            batch.add(_apply(faust_event, batch.rows))
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
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        # TLS and SASL as the app's own consumer (shared.kafka_security).
        **kafka_security.from_faust_credentials(app.conf.broker_credentials).aiokafka())
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
