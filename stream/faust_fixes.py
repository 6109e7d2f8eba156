"""Three documented changes to faust-streaming 0.15: two that the worker's speed depends on,
one that keeps a crash, a restart or a rebalance from skipping events.

1. The terminal spinner. At ``--loglevel warn`` or above, Faust's worker
   attaches a progress spinner to the root logger and sets the root logger to
   DEBUG so that the spinner turns on every record. Every ``log.debug`` call of
   aiokafka then builds a LogRecord (several per message sent): a worker
   measured about 30% faster without it. :func:`install` turns the spinner
   off; the log level asked for is kept.

2. The consumer's hand-off to the agents. faust-streaming 0.15 delivers every fetched message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``
(``faust.transport.consumer.Consumer._drain_messages``). ``wait_first`` wraps
four awaitables in tasks (the callback, the suspend event, the stopped and
crashed events) and runs ``asyncio.wait`` on them, for every message. The
worker then spends most of its time creating, scheduling and cancelling
tasks rather than in its agent: a Faust agent doing nothing measured about
1.5x slower with it than without it (benchmarks/stream.py, ``faust_noop_eps``
is measured with this change applied).

What changes: while the flow is running, the callback (which puts the
message into the agents' stream queues) is awaited directly; only while the
flow is suspended, during a rebalance, is the original ``wait_first`` used,
so a suspension can still interrupt a delivery exactly as upstream does.
Everything else in the loop (offset bookkeeping, commits, yielding to the
event loop every 100 messages) is upstream's code unchanged, except the
gaps (change 3).

3. Every record delivered in order from a known position, and nothing skipped
   committed past. faust-streaming 0.15 skips records of a stream partition
   in three places: ``Consumer.getmany`` drops records fetched while their
   partition was paused; the streams skip records of an ended generation;
   and a new assignment is active, with the flow running, before the app
   pauses it for table recovery, while ``on_recovery_completed`` resumes the
   stream partitions before it seeks them to their committed offsets. Its
   commit takes the first run of consecutive acknowledged offsets wherever
   that run starts (with no committed offset known yet, a new process or an
   offset of 0, which it stores as None, and past a hole of one record), and
   its gap bookkeeping counts the record being delivered as done before an
   agent has it. After a ``kill -9`` and a restart, records so skipped were
   committed past and never read again; records delivered from a stale
   position before the seek could also reach the agent after later ones, and
   a user's row would then count them as read again and not apply them.

   What changes: (a) a partition starts paused when it is assigned, and a
   stream partition stays paused until it has been sought: the app's
   resumption of it takes effect when the seek is done, so its first record
   delivered is the one at its committed offset (and a drained stream buffer
   no longer makes a paused partition active); (b) the seek positions every
   assigned stream partition, at its committed offset or, never committed,
   at its beginning (the ``earliest`` reset policy), fetching the committed
   offsets in one request (upstream asks once per partition, changelogs
   included), leaves the changelog partitions where table recovery put them,
   and makes that position the partition's commit base; (c) an offset is
   committed only as the end of a run of acknowledged offsets (and offsets
   that do not exist: transaction markers, compacted records) that starts
   exactly at the commit base; a partition without a base commits nothing.
   A gap counts only the offsets between two records delivered, never the
   record being delivered. A record skipped on any path is read again after
   the next seek, and nothing after it is committed before it is done.

All three are applied by :func:`install`, which :mod:`stream.app` calls once at import; it
refuses to patch another faust-streaming or aiokafka version than the one they were written
against (:data:`FAUST_VERSION`, :data:`AIOKAFKA_VERSION`).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import aiokafka
import faust
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types.tuples import TP
from faust.utils.functional import consecutive_numbers
from faust.worker import Worker
from mode import Service

#: The versions whose internals these changes were written against and tested with.
FAUST_VERSION, AIOKAFKA_VERSION = "0.15.3", "0.14.0"


async def _drain_messages(self, fetcher: Service) -> None:  # pragma: no cover (in the worker)
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    suspended = self.suspend_flow.is_set
    positioned = _state(self).positioned
    yield_every, num_since_yield = 100, 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = cast(AsyncIterator, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        if tp in positioned:
                            # First record since a seek: r_offset is the position, the
                            # next offset expected (not the last one read).
                            positioned.discard(tp)
                            if offset > r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset, offset - 1)
                        elif r_offset is not None and offset - r_offset > 1 \
                                and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset - 1)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
            unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


def _state(consumer) -> _SeekState:
    try:
        return consumer._recsys_seek_state
    except AttributeError:
        consumer._recsys_seek_state = _SeekState()
        return consumer._recsys_seek_state


class _SeekState:
    """What change 3 keeps per consumer.

    ``unpositioned``: assigned stream partitions not sought since the
    assignment (kept paused); ``resume``: those of them the app asked to
    resume, activated once sought; ``positioned``: sought partitions whose
    first record since has not been delivered yet.
    """

    def __init__(self):
        self.unpositioned: set = set()
        self.resume: set = set()
        self.positioned: set = set()


async def _on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
    """Change 3a: the whole assignment starts paused, and its stream partitions unpositioned."""
    state = _state(self)
    changelogs = self.app.tables.changelog_topics
    state.unpositioned = {tp for tp in assigned if tp.topic not in changelogs}
    state.resume.clear()
    self._paused_partitions.update(assigned)
    await _upstream["on_partitions_assigned"](self, assigned, generation_id)


def _resume_partitions(self, tps) -> None:
    """Change 3a: a stream partition not sought since its assignment is resumed by the seek."""
    state = _state(self)
    tps = set(tps)
    waiting = tps & state.unpositioned
    state.resume |= waiting
    _upstream["resume_partitions"](self, tps - waiting)


def _on_buffer_drop(self, tp: TP) -> None:
    """Change 3a: a partition whose stream buffer drained is active again only if not paused.

    Upstream makes it active whatever else paused it, a rebalance included.
    """
    if tp in self._buffered_partitions:
        self._buffered_partitions.discard(tp)
        if tp not in self._paused_partitions:
            self._get_active_partitions().add(tp)


async def _perform_seek(self) -> None:
    """Change 3b: position every stream partition, make that its commit base, then resume
    those the app asked to resume."""
    state = _state(self)
    positions = await self.seek_to_committed()
    self._read_offset.update(positions)
    self._committed_offset.update(positions)
    state.positioned.update(positions)
    state.unpositioned.difference_update(positions)
    ready, state.resume = state.resume - state.unpositioned, state.resume & state.unpositioned
    if ready:
        _upstream["resume_partitions"](self, ready)


async def _seek_to_committed(self) -> dict:  # pragma: no cover (in the worker)
    """Seek each assigned stream partition to its committed offset, or to its beginning when
    the group never committed it; returns ``{tp: position}`` (change 3b)."""
    consumer = self._ensure_consumer()
    changelogs = self.app.tables.changelog_topics

    async def seek() -> dict:
        tps = [tp for tp in consumer.assignment() if tp.topic not in changelogs]
        if not tps:
            return {}
        committed = await consumer._coordinator.fetch_committed_offsets(tps)
        fresh = [tp for tp in tps if committed.get(tp) is None or committed[tp].offset < 0]
        beginnings = await consumer.beginning_offsets(fresh) if fresh else {}
        positions = {}
        for tp in tps:
            offset = beginnings[tp] if tp in beginnings else committed[tp].offset
            consumer.seek(tp, offset)
            positions[TP(tp.topic, tp.partition)] = offset
        return positions

    return await self.call_thread(seek)


async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
    """Offsets ``offset_from..offset_to`` (inclusive) do not exist: count them as acknowledged.

    Upstream clamps the start to the committed offset + 1, one past the first
    offset not yet committed, which would keep change 3c from committing past
    a hole that starts there.
    """
    committed = self._committed_offset[tp]
    if committed is not None:
        offset_from = max(offset_from, committed)
    if offset_from <= offset_to:
        self._gap[tp].addi(offset_from, offset_to + 1)
        await asyncio.sleep(0)


def _new_offset(self, tp: TP) -> int | None:
    """Change 3c: the offset to commit for ``tp``, or None.

    The end of the run of acknowledged (or non-existent) offsets that starts
    at the commit base, ``_committed_offset[tp]``; None while ``tp`` has no
    base or the offset at the base is not acknowledged yet.
    """
    acked = self._acked[tp]
    base = self._committed_offset[tp]
    if not acked or base is None:
        return None
    gaps = self._gap[tp]
    if gaps:
        top = max(acked) + 1
        for interval in sorted(gaps.overlap(0, top + 1), key=lambda i: i.begin):
            acked.extend(range(interval.begin, interval.end))
        gaps.chop(0, max(top, max(acked) + 1))
    acked.sort()
    index = self._acked_index[tp]
    stale = 0
    while stale < len(acked) and acked[stale] < base:
        stale += 1
    if stale:
        index.difference_update(acked[:stale])
        del acked[:stale]
    if not acked or acked[0] != base:
        return None
    run = next(consecutive_numbers(acked))
    del acked[:len(run)]
    index.difference_update(run)
    return run[-1] + 1


def require_tested_versions(what: str) -> None:
    """Refuse to go on when faust-streaming or aiokafka is not the version ``what`` (a module
    that replaces or extends their internals) was written against and tested with.

    Raises
    ------
    RuntimeError
        Naming both versions and what to do.
    """
    found = (faust.__version__, aiokafka.__version__)
    if found != (FAUST_VERSION, AIOKAFKA_VERSION):
        raise RuntimeError(
            f"{what} relies on internals of faust-streaming {FAUST_VERSION} and aiokafka "
            f"{AIOKAFKA_VERSION}, but {found[0]} and {found[1]} are installed; install the "
            f"pinned versions (pyproject.toml) or review {what} for the new ones")


def _no_spinner(self, logger, level) -> None:
    """Keep the root logger at the level asked for: no spinner handler, no DEBUG."""


_upstream: dict = {}


def install() -> None:
    """Apply the three changes (idempotent).

    Raises
    ------
    RuntimeError
        When the installed faust-streaming or aiokafka is not the version the
        changes were written against: they replace internals, which must be
        read again before an upgrade.
    """
    require_tested_versions("stream/faust_fixes.py")
    if _upstream:
        return
    _upstream["on_partitions_assigned"] = Consumer.on_partitions_assigned
    _upstream["resume_partitions"] = Consumer.resume_partitions
    Consumer._drain_messages = _drain_messages
    Consumer.on_partitions_assigned = _on_partitions_assigned
    Consumer.resume_partitions = _resume_partitions
    Consumer.on_buffer_drop = _on_buffer_drop
    Consumer.perform_seek = _perform_seek
    Consumer._add_gap = _add_gap
    Consumer._new_offset = _new_offset
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed
    Worker._setup_spinner_handler = _no_spinner
