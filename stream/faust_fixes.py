"""Three documented changes to faust-streaming 0.15: two that the worker's speed depends on,
one that keeps a rebalance from skipping events.

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
Everything else in the loop (offset bookkeeping, gaps, commits, yielding to
the event loop every 100 messages) is upstream's code unchanged.

3. Seeking back after a rebalance. Events that were fetched but not yet
processed when a rebalance began are skipped by the streams (their generation
is over); Faust then seeks every partition back to its committed offset so
that they are read again. aiokafka's ``seek_to_committed`` leaves a partition
where it is when its committed offset is None or 0, so in a group that has
not yet committed a partition (a new deployment, a second worker joining
within the first commit interval) those events were never read again:
lost. :func:`_seek_to_committed` seeks such a partition to offset 0, or to
its beginning (the ``earliest`` reset policy the worker uses).
``tests/integration/test_faust_rocksdb.py`` loses an event without it.

All three are applied by :func:`install`, which :mod:`stream.app` calls once at import.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, cast

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.worker import Worker
from mode import Service

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
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
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


async def _seek_to_committed(self) -> dict:  # pragma: no cover (in the worker)
    consumer = self._ensure_consumer()

    async def seek() -> dict:
        committed = await consumer.seek_to_committed()
        earliest = self.app.conf.consumer_auto_offset_reset == "earliest"
        for tp, offset in committed.items():
            if offset == 0:
                consumer.seek(tp, 0)
            elif offset is None and earliest:
                await consumer.seek_to_beginning(tp)
        return committed

    return await self.call_thread(seek)


def _no_spinner(self, logger, level) -> None:
    """Keep the root logger at the level asked for: no spinner handler, no DEBUG."""


def install() -> None:
    """Apply the three changes (idempotent)."""
    Consumer._drain_messages = _drain_messages
    Worker._setup_spinner_handler = _no_spinner
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed
