"""The worker's metrics in Prometheus' text exposition format (``GET /metrics``).

:func:`worker_registry` builds a registry of its own for one worker (never
prometheus_client's global default registry), holding one
:class:`WorkerCollector`. The collector keeps nothing: every scrape reads the
worker's :class:`stream.metrics.WorkerMetrics`, its model cache and the lag
and uncommitted offsets the views compute, so the text and ``/metrics.json``
report the same counts. Counters count from the worker's start, as
Prometheus expects of a process that restarts. The names, their labels and
meaning are listed in ``docs/operations.md``.

Example
-------
>>> from stream.metrics import WorkerMetrics
>>> from stream.model_cache import ModelCache
>>> m = WorkerMetrics(); m.observe("recommended", "events", 0, 41, None)
>>> registry = worker_registry(m, ModelCache("no-store"), lag=lambda: {("events", 0): 3},
...                            uncommitted=lambda: {})
>>> text = exposition(registry).decode()
>>> 'recsys_events_total{outcome="recommended"} 1.0' in text
True
>>> 'recsys_consumer_lag{partition="0",topic="events"} 3.0' in text
True
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, InfoMetricFamily, Metric)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from stream.metrics import LATENCY_BUCKETS_MS, WorkerMetrics

#: The ``Content-Type`` of ``/metrics``: the text format, version 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Outcomes every event ends in (``recsys_events_total``), reported even while 0.
OUTCOMES = ("recommended", "no_model", "dead_letter", "duplicate")
#: Incidents (``recsys_incidents_total``), reported even while 0.
INCIDENTS = ("send_failed", "read_again")

#: Per partition: ``(topic, partition) -> count``.
PartitionCounts = Callable[[], dict[tuple[str, int], int]]


class WorkerCollector(Collector):
    """Reads one worker's metrics on every scrape.

    Parameters
    ----------
    metrics : WorkerMetrics
    models : stream.model_cache.ModelCache
        Or anything with its ``version``, ``refused`` and ``swaps``.
    lag : callable
        Unread events per assigned partition of the events topic.
    uncommitted : callable
        Events handled past the committed offset, per partition.
    """

    def __init__(self, metrics: WorkerMetrics, models, *, lag: PartitionCounts,
                 uncommitted: PartitionCounts):
        self.metrics, self.models, self.lag, self.uncommitted = metrics, models, lag, uncommitted

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        events = CounterMetricFamily("recsys_events", "Events read from the events topic, by "
                                     "the outcome they ended in.", labels=["outcome"])
        for outcome in _with_seen(OUTCOMES, m.counts):
            events.add_metric([outcome], m.counts[outcome])
        yield events
        yield CounterMetricFamily("recsys_lists_sent", "Recommendation lists handed to the "
                                  "producer (one per recommended or no_model event).",
                                  value=m.lists_sent)
        letters = CounterMetricFamily("recsys_dead_letters", "Events sent to the dead-letter "
                                      "topic, by error code.", labels=["code"])
        for code in sorted(m.dlq_codes):
            letters.add_metric([code], m.dlq_codes[code])
        yield letters
        incidents = CounterMetricFamily("recsys_incidents", "Lists not delivered (send_failed) "
                                        "and records read again (read_again).", labels=["kind"])
        for kind in _with_seen(INCIDENTS, m.incidents):
            incidents.add_metric([kind], m.incidents[kind])
        yield incidents
        yield CounterMetricFamily("recsys_batches", "Micro-batches scored and sent.",
                                  value=m.batches)
        yield CounterMetricFamily("recsys_row_writes", "Rows written to the users table (each "
                                  "user's newest row once per micro-batch).", value=m.row_writes)
        yield _latency_histogram(m)
        yield _per_partition("recsys_consumer_lag", "Unread events per assigned partition of "
                             "the events topic.", self.lag())
        yield _per_partition("recsys_uncommitted_events", "Events handled past the committed "
                             "offset, per partition: read again if the worker dies now.",
                             self.uncommitted())
        version = self.models.version
        yield GaugeMetricFamily("recsys_model_loaded", "1 while a model is served, else 0.",
                                value=int(version is not None))
        if version is not None:
            yield InfoMetricFamily("recsys_model", "The model version served.",
                                   value={"version": version})
        yield CounterMetricFamily("recsys_model_swaps", "Model versions swapped in since start.",
                                  value=self.models.swaps)
        yield GaugeMetricFamily("recsys_models_refused", "Model versions refused since start "
                                "(their reasons: /metrics.json models_refused).",
                                value=len(self.models.refused))
        yield GaugeMetricFamily("recsys_worker_start_time_seconds", "When the worker started, "
                                "seconds since the epoch.", value=m.started)


def worker_registry(metrics: WorkerMetrics, models, *, lag: PartitionCounts,
                    uncommitted: PartitionCounts) -> CollectorRegistry:
    """A new registry holding a :class:`WorkerCollector` over these sources, and nothing else."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(metrics, models, lag=lag, uncommitted=uncommitted))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format (version 0.0.4, :data:`CONTENT_TYPE`) of everything in ``registry``."""
    return generate_latest(registry)


def _with_seen(known: tuple[str, ...], counts) -> list[str]:
    """The ``known`` names in their order, then any other counted name, sorted."""
    return list(known) + sorted(name for name in counts if name not in known)


def _latency_histogram(m: WorkerMetrics) -> HistogramMetricFamily:
    buckets, total = [], 0
    for bound, count in zip((*LATENCY_BUCKETS_MS, float("inf")), m.latency_buckets):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else _le(bound / 1000.0), total))
    return HistogramMetricFamily(
        "recsys_event_latency_seconds", "From an event's produce time (its Kafka CreateTime) "
        "to the end of its handling, list sent; since start.", buckets=buckets,
        sum_value=m.latency_sum_ms / 1000.0)


def _le(seconds: float) -> str:
    """A bucket bound as Prometheus clients write it (``0.005``, ``1.0``)."""
    return repr(float(seconds))


def _per_partition(name: str, documentation: str,
                   counts: dict[tuple[str, int], int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["topic", "partition"])
    for (topic, partition), count in sorted(counts.items()):
        family.add_metric([topic, str(partition)], count)
    return family

