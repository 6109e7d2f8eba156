"""The worker's model cache: newest valid version served, a bad one refused, never a step back."""
import dataclasses

from shared.model_store import save_model
from shared.scoring import _example_model
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
