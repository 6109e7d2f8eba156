"""The Prometheus text of /metrics (stream.prometheus), parsed back with prometheus_client."""
from __future__ import annotations

import time

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from shared.scoring.example import _example_model
from stream.metrics import LATENCY_BUCKETS_MS, WorkerMetrics
from stream.model_cache import ModelCache
from stream.prometheus import CONTENT_TYPE, exposition, worker_registry


def _families(registry) -> dict:
    return {family.name: family for family in
            text_string_to_metric_families(exposition(registry).decode())}


def _samples(family) -> dict:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples}


def _worker(**sources):
    metrics, models = WorkerMetrics(), ModelCache("no-store")
    sources = {"lag": lambda: {}, "uncommitted": lambda: {}, **sources}
    return metrics, models, worker_registry(metrics, models, **sources)


def test_the_content_type_is_the_text_format_0_0_4():
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_counts_by_outcome_code_and_incident():
    metrics, _, registry = _worker()
    now = time.time() * 1000.0
    for offset, outcome in enumerate(["recommended", "recommended", "no_model", "dead_letter",
                                      "duplicate", "recommended"]):
        metrics.observe(outcome, "events", offset % 2, offset, now)
    metrics.dlq_codes.update(["not_json", "not_json", "key_mismatch"])
    metrics.incidents["read_again"] += 2
    metrics.batches = 4
    families = _families(registry)
    assert families["recsys_events"].type == "counter"
    assert _samples(families["recsys_events"]) == {
        ("recsys_events_total", (("outcome", "recommended"),)): 3.0,
        ("recsys_events_total", (("outcome", "no_model"),)): 1.0,
        ("recsys_events_total", (("outcome", "dead_letter"),)): 1.0,
        ("recsys_events_total", (("outcome", "duplicate"),)): 1.0}
    assert _samples(families["recsys_lists_sent"]) == {("recsys_lists_sent_total", ()): 4.0}
    assert _samples(families["recsys_dead_letters"]) == {
        ("recsys_dead_letters_total", (("code", "key_mismatch"),)): 1.0,
        ("recsys_dead_letters_total", (("code", "not_json"),)): 2.0}
    assert _samples(families["recsys_incidents"]) == {
        ("recsys_incidents_total", (("kind", "send_failed"),)): 0.0,
        ("recsys_incidents_total", (("kind", "read_again"),)): 2.0}
    assert _samples(families["recsys_batches"]) == {("recsys_batches_total", ()): 4.0}


def test_every_outcome_is_reported_before_any_event():
    _, _, registry = _worker()
    samples = _samples(_families(registry)["recsys_events"])
    assert {dict(labels)["outcome"] for _, labels in samples} == \
        {"recommended", "no_model", "dead_letter", "duplicate"}
    assert set(samples.values()) == {0.0}


def test_latency_histogram_is_cumulative_in_seconds():
    metrics, _, registry = _worker()
    now = time.time() * 1000.0
    for latency_ms in (1, 7, 7, 40, 20_000, 100_000):
        metrics.observe("recommended", "events", 0, 1, now - latency_ms)
    metrics.observe("recommended", "events", 0, 2, now + 60_000)  # a clock ahead: 0 s
    metrics.observe("recommended", "events", 0, 3, None)  # no produce time: not observed
    family = _families(registry)["recsys_event_latency_seconds"]
    assert family.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert list(buckets) == [str(b / 1000.0) for b in LATENCY_BUCKETS_MS] + ["+Inf"]
    assert buckets["0.005"] == 2 and buckets["0.01"] == 4 and buckets["0.05"] == 5
    assert buckets["10.0"] == 5 and buckets["30.0"] == 6 and buckets["+Inf"] == 7
    samples = {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    assert samples["recsys_event_latency_seconds_count"] == 7
    assert 120.0 < samples["recsys_event_latency_seconds_sum"] < 121.0


def test_lag_and_uncommitted_per_partition():
    _, _, registry = _worker(lag=lambda: {("events", 1): 5, ("events", 0): 0},
                             uncommitted=lambda: {("events", 0): 2})
    families = _families(registry)
    assert _samples(families["recsys_consumer_lag"]) == {
        ("recsys_consumer_lag", (("partition", "0"), ("topic", "events"))): 0.0,
        ("recsys_consumer_lag", (("partition", "1"), ("topic", "events"))): 5.0}
    assert _samples(families["recsys_uncommitted_events"]) == {
        ("recsys_uncommitted_events", (("partition", "0"), ("topic", "events"))): 2.0}


def test_the_model_version_is_an_info_label():
    _, models, registry = _worker()
    families = _families(registry)
    assert _samples(families["recsys_model_loaded"]) == {("recsys_model_loaded", ()): 0.0}
    assert "recsys_model_info" not in families
    models.model, models.swaps = _example_model(), 1
    models.refused["v0"] = "v0: checksum of item_factors.npy does not match"
    families = _families(registry)
    # The text format 0.0.4 has no info type: an info metric is a gauge named ..._info.
    assert families["recsys_model_info"].type == "gauge"
    assert _samples(families["recsys_model_info"]) == {
        ("recsys_model_info", (("version", "example"),)): 1.0}
    assert _samples(families["recsys_model_loaded"]) == {("recsys_model_loaded", ()): 1.0}
    assert _samples(families["recsys_model_swaps"]) == {("recsys_model_swaps_total", ()): 1.0}
    assert _samples(families["recsys_models_refused"]) == {("recsys_models_refused", ()): 1.0}


def test_each_worker_has_its_own_registry_and_the_global_one_is_untouched():
    first, _, one = _worker()
    _, _, two = _worker()
    first.observe("recommended", "events", 0, 1, None)
    count = ("recsys_events_total", (("outcome", "recommended"),))
    assert _samples(_families(one)["recsys_events"])[count] == 1.0
    assert _samples(_families(two)["recsys_events"])[count] == 0.0
    assert REGISTRY.get_sample_value("recsys_events_total", {"outcome": "recommended"}) is None
