"""Fault scenarios of the model path: bad versions announced, a retrain killed in its save.

Like :mod:`scenarios`, each takes a :class:`~scenarios.Setup` and returns a
:class:`ModelResult` (a :class:`~scenarios.Result`) whose ``figures`` go to
``benchmarks/results/faults.json`` and whose ``details`` hold what the
tests in ``test_faults_models.py`` check besides.

(e) :func:`models`: while a worker serves the setup's model under a replay,
three bad versions are announced on the cluster's model-updates topic:
NaN factors whose checksums verify, an array file cut short, and a valid
copy announced at a path outside the store. The worker must refuse each
(:meth:`stream.model_cache.ModelCache.offer`), keep serving the good model,
come back serving it after a restart, and still swap in a good newer
version afterwards.

(g) :func:`retrain_kill`: a ``recsys retrain`` writing into the cluster's
store is killed with ``SIGKILL`` in the middle of its save. The store must
show no new version, only the save's ``.tmp-*`` folder, which the next
retrain removes (:func:`shared.model_store.remove_abandoned_temps`); the
worker serves the old model throughout and swaps to the next retrain's.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from harness import ROOT, Cluster, ListWatcher, Message, event_id, verify, wait_until
from scenarios import REPLAY_TIMEOUT_S, SHOP, Result, Setup, replay

from batch.retrain import announce
from batch.synthetic_file import write_jsonl
from shared.model import Model
from shared.model_store import META_FILE, created_at, new_version, save_model, versions
from shared.signals import SignalWeights

#: Longest wait for a worker to answer its views, refuse or serve a version.
WORKER_TIMEOUT_S = 90.0
#: Settings of the retrains of :func:`retrain_kill`: the small model of ``scenarios.train``.
RETRAIN_ENV = {"RECSYS_ALS_FACTORS": "16", "RECSYS_ALS_ITERATIONS": "6",
               "RECSYS_SIMILAR_K": "40"}
#: An absolute path in a text: a slash at its start or after a blank, quote, bracket, = or :.
ABSOLUTE_PATH = re.compile(r"(^|[\s'\"(=:])/")


@dataclass
class ModelResult(Result):
    """A :class:`~scenarios.Result` with what the tests check beyond ``faults.json``'s figures."""

    details: dict = field(default_factory=dict)


# --- helpers ----------------------------------------------------------------------------------

def _health(cluster: Cluster, name: str = "w1") -> str | None:
    """The version worker ``name`` says it serves, or None (no answer, or no model)."""
    status, body = cluster.get(name, "/health/")
    return body.get("model_version") if status == 200 else None


def _refused(cluster: Cluster, name: str = "w1") -> dict[str, str]:
    """``models_refused`` of worker ``name``'s ``/metrics.json`` ({} when it does not answer)."""
    status, body = cluster.get(name, "/metrics.json")
    return dict(body.get("models_refused") or {}) if status == 200 else {}


def _refusing(cluster: Cluster, wanted) -> dict[str, str] | None:
    """``models_refused`` once it names every version in ``wanted``, else None."""
    refused = _refused(cluster)
    return refused if set(wanted) <= refused.keys() else None


def _variant(model: Model, when: datetime, **arrays) -> Model:
    """``model`` as a new version made at ``when``, with ``arrays`` replacing its own."""
    version = new_version(when)
    meta = {**model.meta, "version": version,
            "created_at": when.isoformat(timespec="seconds")}
    meta.pop("files", None)
    return dataclasses.replace(model, version=version, meta=meta, **arrays)


def _announce(cluster: Cluster, version: str, path: Path, when: datetime) -> None:
    """Announce ``version`` at ``path`` on the cluster's model-updates topic, as retrain does."""
    announce(version, path, created_at=int(when.timestamp() * 1000), bootstrap=cluster.bootstrap,
             topic=cluster.topics["models"])


def _no_absolute_path(reason: str, *roots: Path) -> bool:
    return not ABSOLUTE_PATH.search(reason) and not any(str(r) in reason for r in roots)


# --- (e) bad versions announced -----------------------------------------------------------------

def _swap_then_verify(setup: Setup, cluster: Cluster, watcher: ListWatcher, version: str,
                      messages: list[Message], later: list[Message], before: Counter,
                      details: dict, *, refused_key: str, alive):
    """Wait until ``version`` is served, replay ``later``, stop the worker and verify.

    Returns (whether it was served, the verdict over ``messages + later``, the
    lists per model version since ``before``); ``details`` gets the refusals
    (under ``refused_key``) and the worker's exit status.
    """
    swapped = wait_until(lambda: _health(cluster) == version, WORKER_TIMEOUT_S,
                    f"version {version} to be served", alive=alive, watcher=watcher)
    cluster.send(later)
    later_ids = {event_id(m) for m in later}
    watcher.wait_for(lambda w: later_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                     alive=alive, what="the lists after the swap")
    details[refused_key] = _refused(cluster)
    details["exit_status"] = cluster.stop()
    verdict = verify(cluster, messages + later, watcher, setup.rule(cluster))
    return swapped, verdict, Counter(watcher.versions) - before


def models(setup: Setup, *, n_events: int = 6000, n_after: int = 600, seed: int = 7
           ) -> ModelResult:
    """(e) Three bad versions announced during a replay are refused; the good one serves on.

    The three are newer than the served version (an older one would be
    ignored, not refused) and copies of it but for their fault, each saved
    by :func:`shared.model_store.save_model` beside the store before the
    worker starts (so its first load does not see them) and renamed into
    the store, whole, once the replay's lists flow:

    * ``nan``: one item factor NaN, the checksums in meta.json those of the
      files as they now are, so only :func:`shared.model_store.load_model`'s
      finiteness check can refuse it;
    * ``truncated``: ``item_factors.npy`` cut to half its length after the
      save, meta.json as the save wrote it;
    * ``outside``: a valid, checksum-correct version saved outside the store
      and announced at that path; the store has no entry for it.

    After the three are refused the worker is stopped and started once: it
    loads the newest version of its store that verifies (passing over
    ``truncated`` and ``nan``, which are newer) and reads the announcements
    again. Once every list of the replay has arrived, a good newer version
    is saved and announced; ``n_after`` more events follow its swap, and
    their lists must carry it.
    """
    cluster = setup.cluster("models")
    good = setup.model.version
    messages, later = replay(n_events, seed), replay(n_after, seed + 1)
    cluster.send(messages)
    watcher = ListWatcher(cluster)
    alive = lambda: cluster.alive()  # noqa: E731
    base = max(datetime.now(UTC),
               created_at(setup.model.meta) + timedelta(seconds=1)).replace(microsecond=0)
    outside_dir, staging = cluster.tmp / "outside", cluster.tmp / "staging"
    details: dict = {}
    try:
        # Made beforehand, beside the store, and renamed into it just before the announcements.
        factors = setup.model.item_factors.copy()
        factors[0, 0] = np.nan
        nan = save_model(_variant(setup.model, base + timedelta(seconds=1), item_factors=factors),
                         staging)
        truncated = save_model(_variant(setup.model, base + timedelta(seconds=2)), staging)
        data = (truncated / "item_factors.npy").read_bytes()
        (truncated / "item_factors.npy").write_bytes(data[:len(data) // 2])
        outside = save_model(_variant(setup.model, base + timedelta(seconds=3)), outside_dir)
        bad = {"nan": nan.name, "truncated": truncated.name, "outside": outside.name}
        cluster.start()
        wait_until(lambda: _health(cluster) == good, WORKER_TIMEOUT_S, "the worker to serve the model",
              alive=alive, watcher=watcher)
        watcher.wait_for(lambda w: w.total >= n_events // 10, REPLAY_TIMEOUT_S, alive=alive,
                         what="the replay's first lists")
        for path in (nan, truncated):
            os.rename(path, cluster.store / path.name)
        nan, truncated = cluster.store / nan.name, cluster.store / truncated.name
        for path, seconds in ((nan, 1), (truncated, 2), (outside, 3)):
            _announce(cluster, path.name, path, base + timedelta(seconds=seconds))
        refused = wait_until(lambda: _refusing(cluster, bad.values()), WORKER_TIMEOUT_S,
                        "the three refusals", alive=alive, watcher=watcher)
        details["lists_when_refused"] = watcher.total
        details["served_after_refusals"] = _health(cluster)
        details["refused"] = refused
        # One restart: the worker must come back on the good model, not loop on the bad ones.
        details["stop_status"] = cluster.stop()
        cluster.start()
        wait_until(lambda: _health(cluster), WORKER_TIMEOUT_S, "the restarted worker's views",
              alive=alive, watcher=watcher)
        details["served_after_restart"] = _health(cluster)
        details["refused_after_restart"] = wait_until(
            lambda: _refusing(cluster, bad.values()), WORKER_TIMEOUT_S,
            "the refusals after the restart", alive=alive, watcher=watcher)
        replay_ids = {event_id(m) for m in messages}
        watcher.wait_for(lambda w: replay_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                         alive=alive, what="the replay's lists")
        watcher.poll(0.5)
        before = Counter(watcher.versions)
        # A good newer version still swaps in after the refusals.
        newer_at = max(datetime.now(UTC).replace(microsecond=0),
                       base + timedelta(seconds=4))
        newer = save_model(_variant(setup.model, newer_at), cluster.store)
        _announce(cluster, newer.name, newer, newer_at)
        swapped, verdict, after = _swap_then_verify(
            setup, cluster, watcher, newer.name, messages, later, before, details,
            refused_key="refused_at_end", alive=alive)
    finally:
        watcher.close()
        cluster.close()
    reasons = details["refused"]
    roots = (cluster.tmp, setup.tmp, setup.model_path, ROOT)
    details.update(bad=bad, good=good, newer=newer.name, replay_events=len(messages),
                   versions_before_swap=dict(before),
                   versions_after_swap=dict(after))
    figures = {
        "refused": sum(1 for v in bad.values() if v in reasons),
        "served_version_constant": set(before) == {good},
        "refusal_reasons_relative": all(_no_absolute_path(reasons[v], *roots)
                                        for v in bad.values() if v in reasons),
        "restart_serves_good": details["served_after_restart"] == good,
        "swapped_after_refusals": bool(swapped) and set(after) == {newer.name},
        "lists_when_refused": details["lists_when_refused"],
    }
    return ModelResult("models", verdict, figures, details)


# --- (g) a retrain killed in its save -----------------------------------------------------------

def _retrain_env(cluster: Cluster) -> dict[str, str]:
    """``recsys retrain`` writing into the cluster's store and announcing on its topic."""
    return {**os.environ, **RETRAIN_ENV, "KAFKA_BOOTSTRAP": cluster.bootstrap,
            "RECSYS_MODEL_DIR": str(cluster.store),
            "RECSYS_MODEL_UPDATES_TOPIC": cluster.topics["models"]}


def _temps(store: Path) -> list[str]:
    return sorted(p.name for p in store.glob(".tmp-*"))


def _entries(store: Path) -> list[str]:
    """Every name in the store but temporary folders: the versions a reader could see."""
    return sorted(p.name for p in store.iterdir() if not p.name.startswith(".tmp-"))


def retrain_kill(setup: Setup, *, n_events: int = 3000, n_after: int = 500,
                 train_events: int = 20_000, seed: int = 9) -> ModelResult:
    """(g) ``SIGKILL`` of ``recsys retrain`` in its save leaves no version and no lasting trace.

    The retrain runs as a process of its own through ``slow_save.py``, which
    makes the save pause after its first array file and say so in a marker
    file; a replay of ``n_events`` is then sent, and the kill comes once its
    first lists arrive, while the worker is busy with it. Right after the
    kill the store holds the versions it had and one ``.tmp-*`` folder (the
    owner file, one array, no meta.json). A plain retrain then saves, which
    removes that folder since no live process holds its owner lock, and
    announces; the worker, never restarted, swaps in the new version, and
    the lists of ``n_after`` further events carry it. The retrains train on
    an event file of the same shop (the signal weights of the settings, so
    the verifier's rule stays the worker's).
    """
    cluster = setup.cluster("retrain")
    good = setup.model.version
    messages, later = replay(n_events, seed), replay(n_after, seed + 1)
    events_file = cluster.tmp / "train" / "events.jsonl"
    events_file.parent.mkdir(parents=True)
    write_jsonl(events_file, train_events, seed=seed + 100, params=SHOP)
    marker = cluster.tmp / "save-paused"
    env = _retrain_env(cluster)
    command = ["retrain", "--input", str(events_file), "--store", str(cluster.store), "--announce"]
    watcher = ListWatcher(cluster)
    alive = lambda: cluster.alive()  # noqa: E731
    details: dict = {"good": good}
    slow = None
    try:
        cluster.start()
        wait_until(lambda: _health(cluster) == good, WORKER_TIMEOUT_S, "the worker to serve the model",
              alive=alive, watcher=watcher)
        with cluster.log("retrain-killed").open("ab") as log:
            slow = subprocess.Popen([sys.executable, str(Path(__file__).with_name("slow_save.py")),
                                     str(marker), *command], env=env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: marker.exists(), WORKER_TIMEOUT_S, "the retrain to reach its save",
                  alive=lambda: slow.poll() is None, watcher=watcher)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{cluster.tail('retrain-killed')}") from None
        # The save is paused; the replay starts, and the kill comes once its lists flow.
        cluster.send(messages)
        watcher.wait_for(lambda w: w.total >= n_events // 10, REPLAY_TIMEOUT_S, alive=alive,
                         what="the replay's first lists")
        assert slow.poll() is None, "the retrain ended before it was killed"
        slow.send_signal(signal.SIGKILL)
        details["killed_status"] = slow.wait(30)
        details["lists_at_kill"] = watcher.total
        tmp_name = marker.read_text()
        details["tmp_name"] = tmp_name
        details["temps_after_kill"] = _temps(cluster.store)
        details["tmp_files_after_kill"] = sorted(
            p.name for p in (cluster.store / tmp_name).iterdir()) \
            if (cluster.store / tmp_name).is_dir() else None
        details["entries_after_kill"] = _entries(cluster.store)
        details["versions_after_kill"] = versions(cluster.store)
        details["served_after_kill"] = _health(cluster)
        replay_ids = {event_id(m) for m in messages}
        watcher.wait_for(lambda w: replay_ids <= w.counts.keys(), REPLAY_TIMEOUT_S,
                         alive=alive, what="the replay's lists")
        watcher.poll(0.5)
        before = Counter(watcher.versions)
        # The next retrain, unpatched: it saves, removes the dead save's folder, announces.
        finished = subprocess.run([sys.executable, "-m", "recsys", *command], env=env,
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
        details["retrain_status"] = finished.returncode
        details["retrain_stderr"] = finished.stderr[-3000:]
        details["temps_after_retrain"] = _temps(cluster.store)
        details["versions_after_retrain"] = versions(cluster.store)
        newer = details["versions_after_retrain"][-1]
        details["newer"] = newer
        meta = json.loads((cluster.store / newer / META_FILE).read_text())
        details["same_weights"] = (SignalWeights.from_meta(meta)
                                   == SignalWeights.from_meta(setup.model.meta))
        swapped, verdict, after = _swap_then_verify(
            setup, cluster, watcher, newer, messages, later, before, details,
            refused_key="refused", alive=alive)
    finally:
        if slow is not None and slow.poll() is None:
            slow.kill()
            slow.wait(30)
        watcher.close()
        cluster.close()
    details.update(replay_events=len(messages), versions_before_swap=dict(before),
                   versions_after_swap=dict(after))
    figures = {
        "killed_in_save": (details["killed_status"] == -signal.SIGKILL
                           and details["temps_after_kill"] == [tmp_name]
                           and details["versions_after_kill"] == [good]
                           and details["entries_after_kill"] == [good]),
        "tmp_removed": details["temps_after_retrain"] == [],
        "served_version_constant": set(before) == {good},
        "swapped_after_kill": bool(swapped) and set(after) == {newer},
        "lists_at_kill": details["lists_at_kill"],
    }
    return ModelResult("retrain_kill", verdict, figures, details)
