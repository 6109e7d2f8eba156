"""The agent's micro-batch: its timer flushes only a batch the agent has stopped feeding."""
import asyncio
from types import SimpleNamespace

from stream import agents


class _Stream:
    def __init__(self, queue):
        self.channel = SimpleNamespace(queue=queue)
        self.acked = []

    async def ack(self, event):
        self.acked.append(event)


def _step(offset):
    message = SimpleNamespace(topic="events", partition=0, offset=offset, timestamp=0.0,
                              timestamp_type=1)
    return agents._Step(SimpleNamespace(message=message), "duplicate")


def _run(queued_events: int, monkeypatch) -> tuple[list, list]:
    """A batch of two pending steps, the timer armed, ``queued_events`` waiting in the queue;
    returns (batches scored, events acknowledged) after three timer periods."""
    finished = []
    monkeypatch.setattr(agents, "_finish", lambda steps: finished.append(len(steps)))

    async def run():
        queue = asyncio.Queue()
        for i in range(queued_events):
            queue.put_nowait(i)
        stream = _Stream(queue)
        batch = agents._MicroBatch(stream)
        batch.add(_step(1))
        batch.add(_step(2))
        batch.flush_later()
        await asyncio.sleep(3 * agents.BATCH_WAIT_S + 0.01)
        return stream.acked

    acked = asyncio.run(run())
    return finished, acked


def test_timer_leaves_a_batch_alone_while_events_are_queued(monkeypatch):
    """Under load the agent is about to read the queued events: the batch keeps growing."""
    finished, acked = _run(queued_events=3, monkeypatch=monkeypatch)
    assert finished == [] and acked == []


def test_timer_flushes_a_batch_left_with_an_empty_queue(monkeypatch):
    """A rebalance or stop cleared the queue under a pending batch: it is scored and acked."""
    finished, acked = _run(queued_events=0, monkeypatch=monkeypatch)
    assert finished == [2] and [e.message.offset for e in acked] == [1, 2]
