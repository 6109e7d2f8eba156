"""Model store: atomic versions, bit-exact round trip, every corruption detected."""
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import shared.model_store as store_module
from shared.model import ARRAY_FIELDS, Model
from shared.model_store import (ModelError, latest_version, load_latest, load_model, new_version,
                                prune, save_model, versions)


def make_model(version="20261127T150102Z-000001", n_items=4, k=2, seed=0) -> Model:
    rng = np.random.default_rng(seed)
    neighbours = rng.integers(-1, n_items, size=(n_items, k)).astype(np.int32)
    return Model(
        version=version,
        item_ids=np.array([f"item-{i}" for i in range(n_items)]),
        item_factors=rng.normal(size=(n_items, 3)).astype(np.float32),
        similar_items=neighbours, similar_scores=rng.random((n_items, k), dtype=np.float32),
        cooc_items=neighbours[::-1].copy(), cooc_scores=rng.random((n_items, k), dtype=np.float32),
        next_items=neighbours.copy(), next_scores=rng.random((n_items, k), dtype=np.float32),
        popularity=rng.random(n_items, dtype=np.float32),
        item_category=np.arange(n_items, dtype=np.int32) % 2 - 1,
        categories=np.array(["shoes"]),
        meta={"params": {"regularization": 0.05, "factors": 3}, "counts": {"items": n_items}})


def test_round_trip_is_bit_exact(tmp_path):
    model = make_model()
    path = save_model(model, tmp_path)
    assert path == tmp_path / model.version
    loaded = load_model(path)
    assert loaded.version == model.version
    for name in ARRAY_FIELDS:
        expected, actual = getattr(model, name), getattr(loaded, name)
        assert actual.dtype == expected.dtype, name
        assert actual.tobytes() == expected.tobytes(), name
    assert loaded.meta["params"] == model.meta["params"]
    assert loaded.regularization == 0.05


def test_meta_lists_every_file_with_checksum_dtype_and_shape(tmp_path):
    path = save_model(make_model(), tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["version"] == path.name and meta["format"] == store_module.FORMAT
    assert "created_at" in meta
    assert set(meta["files"]) == set(ARRAY_FIELDS)
    assert meta["files"]["item_factors"]["shape"] == [4, 3]
    assert len(meta["files"]["item_ids"]["sha256"]) == 64
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [f"{name}.npy" for name in ARRAY_FIELDS] + ["meta.json"])


def test_object_string_ids_are_stored_as_fixed_width_unicode(tmp_path):
    model = make_model()
    model = Model(**{**vars(model), "item_ids": model.item_ids.astype(object)})
    loaded = load_model(save_model(model, tmp_path))
    assert loaded.item_ids.dtype.kind == "U"
    assert loaded.item_ids.tolist() == model.item_ids.tolist()


def test_flipped_byte_is_detected(tmp_path):
    path = save_model(make_model(), tmp_path)
    target = path / "item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="item_factors.npy: checksum"):
        load_model(path)


@pytest.mark.parametrize("name", ["similar_items.npy", "meta.json"])
def test_missing_file_is_detected(tmp_path, name):
    path = save_model(make_model(), tmp_path)
    (path / name).unlink()
    with pytest.raises(ModelError, match="missing|no meta.json"):
        load_model(path)


def test_arrays_that_disagree_on_items_are_rejected(tmp_path):
    model = make_model()
    bad = Model(**{**vars(model), "popularity": model.popularity[:3]})
    with pytest.raises(ModelError, match="popularity has 3 rows, item_ids has 4"):
        load_model(save_model(bad, tmp_path))


def test_neighbour_indices_out_of_range_are_rejected(tmp_path):
    model = make_model()
    bad = Model(**{**vars(model), "next_items": model.next_items + 10})
    with pytest.raises(ModelError, match="next_items refers to items outside"):
        load_model(save_model(bad, tmp_path))


def test_interrupted_save_leaves_no_trace(tmp_path, monkeypatch):
    save_model(make_model("20261127T150102Z-000001"), tmp_path)
    real_write = store_module._write_array
    written = []

    def fail_midway(path, array):
        if len(written) == 3:
            raise OSError("disk full")
        written.append(path)
        return real_write(path, array)

    monkeypatch.setattr(store_module, "_write_array", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        save_model(make_model("20261127T150103Z-000001"), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["20261127T150102Z-000001"]
    assert latest_version(tmp_path) == "20261127T150102Z-000001"
    assert load_latest(tmp_path).version == "20261127T150102Z-000001"


def test_existing_version_is_never_overwritten(tmp_path):
    save_model(make_model(seed=1), tmp_path)
    with pytest.raises(ModelError, match="already exists"):
        save_model(make_model(seed=2), tmp_path)
    assert load_latest(tmp_path).item_factors.tobytes() == make_model(seed=1).item_factors.tobytes()


def test_versions_of_the_same_second_differ_and_sort_by_time():
    first = new_version(datetime(2026, 11, 27, 15, 1, 2, 5, tzinfo=timezone.utc))
    second = new_version(datetime(2026, 11, 27, 15, 1, 2, 40, tzinfo=timezone.utc))
    later = new_version(datetime(2026, 11, 27, 15, 1, 3, tzinfo=timezone.utc))
    assert first == "20261127T150102Z-000005"
    assert sorted([later, second, first]) == [first, second, later]


def test_latest_ignores_temporary_directories_and_prune_keeps_newest(tmp_path):
    names = [f"20261127T15010{i}Z-000000" for i in range(5)]
    for name in names:
        save_model(make_model(name), tmp_path)
    (tmp_path / ".tmp-20991231T000000Z-000000-abcd").mkdir()
    assert latest_version(tmp_path) == names[-1]
    assert prune(tmp_path, 2) == names[:3]
    assert versions(tmp_path) == names[3:]
    assert prune(tmp_path, 2) == []


def test_empty_or_absent_store(tmp_path):
    assert latest_version(tmp_path / "nowhere") is None
    with pytest.raises(ModelError, match="no model version"):
        load_latest(tmp_path)


def test_malformed_version_name_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not of the form"):
        save_model(make_model("../escape"), tmp_path)
    assert not any(Path(tmp_path).iterdir())
