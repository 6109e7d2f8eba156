"""What a worker counts about itself: events, dead letters, latency, consumer lag."""
from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter, deque

import numpy as np

#: Upper bounds (ms) of the event latency histogram's buckets, below the last (+Inf) one.
LATENCY_BUCKETS_MS: tuple[float, ...] = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                                         2500.0, 5000.0, 10000.0, 30000.0)


class WorkerMetrics:
    """Counters and a window of recent event latencies for one worker process.

    Parameters
    ----------
    window : int
        Latencies kept for the percentiles (the most recent ones).
    """

    def __init__(self, window: int = 10000):
        self.started = time.time()
        self._born = time.monotonic()
        self.counts: Counter = Counter()
        #: What happened beside the outcomes: lists not delivered, records read again.
        self.incidents: Counter = Counter()
        self.dlq_codes: Counter = Counter()
        self.latencies_ms: deque = deque(maxlen=window)
        #: Every latency observed since start, per bucket of :data:`LATENCY_BUCKETS_MS` (the
        #: last one is +Inf; not cumulative), and their sum; negative ones count as 0.
        self.latency_buckets: list[int] = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0
        self.read_offsets: dict[tuple[str, int], int] = {}
        #: When each partition last had an event handled (time.monotonic()).
        self.progressed_at: dict[tuple[str, int], float] = {}
        #: Per partition: the committed offset last sampled, and since when it holds.
        self.commits: dict[tuple[str, int], tuple[int, float]] = {}
        self.batches = 0
        #: Rows written to the users table: one per user per micro-batch, at most one per event.
        self.row_writes = 0

    def observe(self, outcome: str, topic: str, partition: int, offset: int,
                produced_ms: float | None) -> None:
        """Count one handled event and its latency from produce time to now.

        >>> m = WorkerMetrics(); m.observe("recommended", "e", 0, 1, time.time() * 1000.0 - 7)
        >>> m.latency_buckets[:3], m.latency_sum_ms >= 7
        ([0, 1, 0], True)
        """
        self.counts[outcome] += 1
        self.read_offsets[(topic, partition)] = offset
        self.progressed_at[(topic, partition)] = time.monotonic()
        if produced_ms is not None and produced_ms > 0:
            latency = time.time() * 1000.0 - produced_ms
            self.latencies_ms.append(latency)
            latency = max(latency, 0.0)  # a producer clock ahead of this one
            self.latency_buckets[bisect_left(LATENCY_BUCKETS_MS, latency)] += 1
            self.latency_sum_ms += latency

    def latency_percentiles(self) -> dict[str, float | None]:
        """p50/p90/p99 of the recent latencies in milliseconds."""
        if not self.latencies_ms:
            return {"p50": None, "p90": None, "p99": None}
        p50, p90, p99 = np.percentile(np.fromiter(self.latencies_ms, float), [50, 90, 99])
        return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}

    def lag(self, highwater) -> dict[str, int]:
        """Events not yet read per partition: ``highwater(topic, partition)`` minus next offset."""
        lags = {}
        for (topic, partition), offset in sorted(self.read_offsets.items()):
            end = highwater(topic, partition)
            if end is not None:
                lags[f"{topic}/{partition}"] = max(0, end - offset - 1)
        return lags

    @property
    def lists_sent(self) -> int:
        """Lists handed to the producer: one per event that ended ``recommended`` or
        ``no_model`` (``incidents["send_failed"]`` counts those then not delivered)."""
        return self.counts["recommended"] + self.counts["no_model"]

    def stalled(self, lags: dict[tuple[str, int], int], stall_s: float,
                now: float | None = None) -> list[str]:
        """Partitions (``topic/partition``) with unread events in ``lags`` and no event handled
        for ``stall_s`` seconds (counted from this object's creation when none was).

        >>> m = WorkerMetrics(); m.observe("recommended", "e", 0, 5, None)
        >>> m.stalled({("e", 0): 3, ("e", 1): 0}, 60.0), m.stalled({("e", 0): 3}, 1.0, now=1e12)
        ([], ['e/0'])
        """
        now = time.monotonic() if now is None else now
        return [f"{topic}/{partition}" for (topic, partition), lag in sorted(lags.items())
                if lag > 0 and now - self.progressed_at.get((topic, partition), self._born)
                > stall_s]

    def sample_commits(self, committed: dict[tuple[str, int], int | None],
                       now: float | None = None) -> None:
        """Record the committed offset of each partition held now (for :meth:`commit_stalled`);
        a partition no longer held is forgotten, and one without a committed offset is not
        tracked."""
        now = time.monotonic() if now is None else now
        previous = self.commits
        self.commits = {key: previous[key] if previous.get(key, (None,))[0] == offset
                        else (offset, now)
                        for key, offset in committed.items() if offset is not None}

    def commit_stalled(self, stall_s: float, now: float | None = None) -> list[str]:
        """Partitions with events handled past their committed offset, and that offset
        unchanged for ``stall_s`` seconds: their commit is held by an event not done.

        >>> m = WorkerMetrics(); m.sample_commits({("e", 0): 3}, now=0.0)
        >>> m.observe("recommended", "e", 0, 9, None)
        >>> m.sample_commits({("e", 0): 3}, now=30.0)
        >>> m.commit_stalled(60.0, now=30.0), m.commit_stalled(60.0, now=61.0)
        ([], ['e/0'])
        >>> m.sample_commits({}, now=62.0); m.commit_stalled(60.0, now=200.0)  # moved away
        []
        """
        now = time.monotonic() if now is None else now
        return [f"{topic}/{partition}" for (topic, partition), (offset, since)
                in sorted(self.commits.items())
                if self.read_offsets.get((topic, partition), -1) >= offset
                and now - since > stall_s]

    def snapshot(self, *, model_version: str | None, lag: dict[str, int]) -> dict:
        """Everything as plain values, for the metrics view."""
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "events": dict(self.counts),
            "incidents": dict(self.incidents),
            "dead_letters": dict(self.dlq_codes),
            "latency_ms": self.latency_percentiles(),
            "batches": self.batches,
            "row_writes": self.row_writes,
            "mean_batch": round(sum(self.counts.values()) / self.batches, 2) if self.batches else None,
            "consumer_lag": lag,
            "consumer_lag_total": sum(lag.values()),
            "model_version": model_version,
        }
