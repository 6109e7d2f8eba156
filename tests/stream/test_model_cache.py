"""The worker's model cache: newest valid version served, a bad one refused, never a step back,
and nothing a version holds or an announcement says makes it raise."""
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

import shared.model_store as store_module
import stream.model_cache as model_cache_module
from shared.model_store import save_model
from shared.scoring.example import _example_model
from stream.model_cache import ModelCache

VERSIONS = ["20261127T150100Z-000000", "20261127T150200Z-000000", "20261127T150300Z-000000"]


def _store(tmp_path, broken=()):
    for version in VERSIONS:
        path = save_model(dataclasses.replace(_example_model(), version=version), tmp_path)
        if version in broken:
            factors = path / "item_factors.npy"
            data = bytearray(factors.read_bytes())
            data[-1] ^= 0xFF
            factors.write_bytes(bytes(data))
    return tmp_path


def test_start_serves_the_newest_version(tmp_path):
    cache = ModelCache(_store(tmp_path))
    assert cache.load_latest()
    assert cache.version == VERSIONS[-1] and cache.refused == {}


def test_start_passes_over_a_broken_newest_version_to_the_newest_good_one(tmp_path):
    cache = ModelCache(_store(tmp_path, broken=VERSIONS[1:]))
    assert cache.load_latest()
    assert cache.version == VERSIONS[0]
    assert sorted(cache.refused) == VERSIONS[1:]
    assert all("checksum" in reason for reason in cache.refused.values())


def test_empty_store_serves_nothing(tmp_path):
    cache = ModelCache(tmp_path / "nowhere")
    assert not cache.load_latest() and cache.model is None


def test_an_offered_bad_version_keeps_the_current_one_and_older_ones_are_ignored(tmp_path):
    store = _store(tmp_path, broken=VERSIONS[2:])
    cache = ModelCache(store)
    assert cache.offer(VERSIONS[1])
    assert not cache.offer(VERSIONS[2])
    assert cache.version == VERSIONS[1] and list(cache.refused) == [VERSIONS[2]]
    assert not cache.offer(VERSIONS[0]) and cache.version == VERSIONS[1]


# --- Whatever goes wrong, offer refuses the version and the current model keeps serving ---

def _serving(tmp_path, version=VERSIONS[0]):
    """A store with VERSIONS and a cache serving ``version``."""
    cache = ModelCache(_store(tmp_path))
    assert cache.offer(version)
    return cache


def _forge_nan_factors(path):
    """NaN factors with meta.json's checksum recomputed to match."""
    factors = np.load(path / "item_factors.npy")
    factors[0, 0] = np.nan
    entry = store_module._write_array(path / "item_factors.npy", factors)
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["item_factors"] = entry
    (path / "meta.json").write_text(json.dumps(meta))


def test_nan_factors_with_a_matching_checksum_are_refused(tmp_path):
    cache = _serving(tmp_path)
    _forge_nan_factors(tmp_path / VERSIONS[1])
    assert not cache.offer(VERSIONS[1], tmp_path / VERSIONS[1])
    assert cache.version == VERSIONS[0]
    assert cache.refused[VERSIONS[1]] == (f"{VERSIONS[1]}/item_factors.npy: 1 of 8 values are "
                                          f"NaN or infinite")


def test_prepare_raising_refuses_the_version_and_keeps_the_current_one(tmp_path, monkeypatch):
    cache = _serving(tmp_path)

    def broken(model):
        raise ValueError(f"cannot prepare {tmp_path}/{model.version}/item_factors.npy")

    monkeypatch.setattr(model_cache_module, "prepare", broken)
    assert not cache.offer(VERSIONS[1])
    assert cache.version == VERSIONS[0] and cache.swaps == 1
    reason = cache.refused[VERSIONS[1]]
    assert reason == (f"{VERSIONS[1]}: ValueError while loading or preparing: cannot prepare "
                      f"{VERSIONS[1]}/item_factors.npy")
    monkeypatch.undo()
    assert cache.offer(VERSIONS[2]) and cache.version == VERSIONS[2]


@pytest.mark.parametrize("error", [MemoryError(), OSError(5, "Input/output error"),
                                   KeyError("params")])
def test_any_error_while_loading_refuses_the_version(tmp_path, monkeypatch, error):
    cache = _serving(tmp_path)

    def broken(path):
        raise error

    monkeypatch.setattr(model_cache_module, "load_model", broken)
    assert not cache.offer(VERSIONS[1])
    assert cache.version == VERSIONS[0]
    assert cache.refused[VERSIONS[1]].startswith(f"{VERSIONS[1]}: {type(error).__name__}")


def test_bad_signal_weights_in_meta_are_refused(tmp_path):
    cache = _serving(tmp_path)
    path = tmp_path / VERSIONS[1]
    meta = json.loads((path / "meta.json").read_text())
    meta["params"]["signal_weights"] = {"view": 1.0}
    (path / "meta.json").write_text(json.dumps(meta))
    assert not cache.offer(VERSIONS[1])
    assert "signal_weights" in cache.refused[VERSIONS[1]] and cache.version == VERSIONS[0]


@pytest.mark.parametrize("version", ["../escape", "", "20261399T000000Z-000000", None])
def test_a_malformed_version_name_is_refused_not_raised(tmp_path, version):
    cache = _serving(tmp_path)
    assert not cache.offer(version, str(tmp_path / VERSIONS[1]))
    assert cache.version == VERSIONS[0] and str(version) in cache.refused


# --- The announced path must name the store's entry ---------------------------------------

def test_an_announced_path_outside_the_store_is_refused(tmp_path):
    cache = _serving(tmp_path / "store")
    outside = save_model(dataclasses.replace(_example_model(), version=VERSIONS[1]),
                         tmp_path / "elsewhere")
    assert not cache.offer(VERSIONS[1], str(outside))
    assert cache.version == VERSIONS[0]
    assert cache.refused[VERSIONS[1]] == (f"{VERSIONS[1]}: the announced path is outside the "
                                          f"model store (or not this version's entry in it)")


def test_an_announced_path_into_another_version_or_via_dotdot_is_refused(tmp_path):
    store = tmp_path / "store"
    cache = _serving(store)
    assert not cache.offer(VERSIONS[2], str(store / VERSIONS[1]))
    (tmp_path / VERSIONS[1]).mkdir()
    assert not cache.offer(VERSIONS[1], str(store / ".." / VERSIONS[1]))
    assert cache.version == VERSIONS[0] and sorted(cache.refused) == VERSIONS[1:]


def test_an_announced_path_this_worker_cannot_see_reads_the_store_entry(tmp_path):
    cache = _serving(tmp_path)
    assert cache.offer(VERSIONS[1], "/mnt/elsewhere/models/" + VERSIONS[1])
    assert cache.version == VERSIONS[1]


def test_a_symlinked_store_entry_is_served_whichever_way_it_is_announced(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    for version in VERSIONS[:2]:
        save_model(dataclasses.replace(_example_model(), version=version), elsewhere)
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(elsewhere / VERSIONS[0], store / VERSIONS[0])
    os.symlink(elsewhere / VERSIONS[1], store / VERSIONS[1])
    cache = ModelCache(store)
    assert cache.offer(VERSIONS[0], str(store / VERSIONS[0]))  # the entry, a link
    assert cache.offer(VERSIONS[1], str((store / VERSIONS[1]).resolve()))  # its target
    assert cache.version == VERSIONS[1] and cache.refused == {}
    restarted = ModelCache(store)
    assert restarted.load_latest() and restarted.version == VERSIONS[1]


def test_a_store_reached_through_a_symlink_accepts_paths_under_either_name(tmp_path):
    real = _store(tmp_path / "real")
    link = tmp_path / "link"
    os.symlink(real, link)
    cache = ModelCache(link)
    assert cache.offer(VERSIONS[0], str(real / VERSIONS[0]))
    assert cache.offer(VERSIONS[1], str(link / VERSIONS[1]))
    assert cache.refused == {}


# --- Versions are ordered by creation time; a far-future one blocks nothing ---------------

def _set_meta(path, **changes):
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def test_an_offered_version_is_newer_by_created_at_not_by_name(tmp_path):
    store = _store(tmp_path)
    _set_meta(store / VERSIONS[0], created_at="2026-11-28T00:00:00+00:00")
    cache = ModelCache(store)
    assert cache.load_latest() and cache.version == VERSIONS[0]
    assert not cache.offer(VERSIONS[2]) and cache.version == VERSIONS[0]
    assert cache.refused == {}  # older: ignored, not refused


def test_a_far_future_version_is_refused_and_later_real_ones_are_served(tmp_path):
    store = _store(tmp_path)
    cache = ModelCache(store)
    assert cache.offer(VERSIONS[0])
    future = "99991231T235959Z-999999"
    shutil.copytree(store / VERSIONS[0], store / future)
    meta = json.loads((store / future / "meta.json").read_text())
    del meta["created_at"]
    (store / future / "meta.json").write_text(json.dumps({**meta, "version": future}))
    assert not cache.offer(future, str(store / future))
    assert "lies in the future" in cache.refused[future]
    assert cache.offer(VERSIONS[1]) and cache.version == VERSIONS[1]
    restarted = ModelCache(store)
    assert restarted.load_latest() and restarted.version == VERSIONS[2]


def test_a_far_future_created_at_is_refused(tmp_path):
    store = _store(tmp_path)
    _set_meta(store / VERSIONS[1], created_at="9999-01-01T00:00:00+00:00")
    cache = ModelCache(store)
    assert cache.offer(VERSIONS[0])
    assert not cache.offer(VERSIONS[1])
    assert "lies in the future" in cache.refused[VERSIONS[1]]
    assert cache.offer(VERSIONS[2])


def test_an_older_announced_version_pruned_from_the_store_is_ignored_not_refused(tmp_path):
    store = _store(tmp_path)
    cache = ModelCache(store)
    assert cache.load_latest()
    shutil.rmtree(store / VERSIONS[0])
    assert not cache.offer(VERSIONS[0], str(store / VERSIONS[0]))
    assert cache.refused == {}


# --- Refusal texts carry no absolute path -------------------------------------------------

def test_refusal_texts_name_the_version_and_files_relative_to_the_store(tmp_path):
    cache = ModelCache(_store(tmp_path, broken=VERSIONS[1:]))
    (tmp_path / VERSIONS[0] / "popularity.npy").unlink()
    assert not cache.load_latest()
    assert sorted(cache.refused) == VERSIONS
    for version, reason in cache.refused.items():
        assert reason.startswith(f"{version}/"), reason
        assert str(tmp_path) not in reason and not re.search(r"(^|[\s'\"])/", reason), reason
    assert cache.refused[VERSIONS[0]] == (f"{VERSIONS[0]}/popularity.npy is missing or "
                                          f"unreadable: No such file or directory")
