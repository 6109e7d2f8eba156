"""Model store: atomic versions, bit-exact round trip, every corruption and unusable array
refused, versions ordered by creation time, left-overs of killed saves removed."""
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import shared.model_store as store_module
from shared.model import ARRAY_FIELDS, Model
from shared.model_store import (ModelError, creation_time, latest_version, load_latest, load_model,
                                new_version, prune, remove_abandoned_temps, save_model,
                                version_time, versions)


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
    first = new_version(datetime(2026, 11, 27, 15, 1, 2, 5, tzinfo=UTC))
    second = new_version(datetime(2026, 11, 27, 15, 1, 2, 40, tzinfo=UTC))
    later = new_version(datetime(2026, 11, 27, 15, 1, 3, tzinfo=UTC))
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


# --- Arrays that would break scoring are refused, even with checksums recomputed ---------

def rewrite(path: Path, name: str, array) -> None:
    """Replace ``name`` with ``array`` and fix meta.json to match, as a forger would."""
    entry = store_module._write_array(path / f"{name}.npy", np.asarray(array))
    _set_file_entry(path, name, entry)


def rewrite_bytes(path: Path, name: str, data: bytes) -> None:
    """Replace ``name``'s bytes and recompute its checksum, keeping dtype and shape."""
    (path / f"{name}.npy").write_bytes(data)
    meta = json.loads((path / "meta.json").read_text())
    _set_file_entry(path, name, {**meta["files"][name],
                                 "sha256": store_module.hashlib.sha256(data).hexdigest()})


def _set_file_entry(path: Path, name: str, entry: dict) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta["files"][name] = entry
    (path / "meta.json").write_text(json.dumps(meta))


def edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _with(array, row, col, value):
    array = array.copy()
    array[row, col] = value
    return array


GOOD = make_model()
BAD_ARRAYS = {
    "nan factor": ("item_factors", _with(GOOD.item_factors, 1, 2, np.nan),
                   "item_factors.npy: 1 of 12 values are NaN or infinite"),
    "inf score": ("similar_scores", _with(GOOD.similar_scores, 0, 0, np.inf),
                  "similar_scores.npy: 1 of 8 values are NaN or infinite"),
    "inf popularity": ("popularity", np.array([1, -np.inf, 0, 2], dtype=np.float32),
                       "popularity.npy: 1 of 4 values are NaN or infinite"),
    "1-D factors": ("item_factors", GOOD.item_factors[:, 0].copy(),
                    "item_factors.npy: a 1-D <f4 array where a 2-D float"),
    "integer factors": ("item_factors", GOOD.item_factors.astype(np.int32),
                        "item_factors.npy: a 2-D <i4 array where a 2-D float"),
    "float16 factors": ("item_factors", GOOD.item_factors.astype(np.float16),
                        "item_factors.npy: a 2-D <f2 array"),
    "no factors": ("item_factors", np.zeros((4, 0), dtype=np.float32),
                   "at least one item and one factor"),
    "factor rows": ("item_factors", np.zeros((5, 3), dtype=np.float32),
                    "item_factors.npy: item_factors has 5 rows, item_ids has 4"),
    "popularity length": ("popularity", np.ones(5, dtype=np.float32),
                          "popularity.npy: popularity has 5 rows, item_ids has 4"),
    "2-D popularity": ("popularity", np.ones((4, 1), dtype=np.float32),
                       "popularity.npy: a 2-D <f4 array where a 1-D float"),
    "repeated id": ("item_ids", np.array(["a", "b", "a", "c"]),
                    "item_ids.npy: id 'a' appears more than once"),
    "numeric ids": ("item_ids", np.arange(4), "item_ids.npy: a 1-D <i8 array where a 1-D text"),
    "neighbour past the end": ("similar_items", _with(GOOD.similar_items, 2, 1, 4),
                               "similar_items.npy: similar_items refers to items outside 0..3"),
    "neighbour below -1": ("cooc_items", _with(GOOD.cooc_items, 0, 0, -2),
                           "cooc_items.npy: cooc_items refers to items outside 0..3"),
    "float neighbours": ("next_items", GOOD.next_items.astype(np.float32),
                         "next_items.npy: a 2-D <f4 array where a 2-D signed integer"),
    "unsigned neighbours": ("similar_items", np.zeros((4, 2), dtype=np.uint32),
                            "similar_items.npy: a 2-D <u4 array"),
    "scores of another shape": ("next_scores", np.zeros((4, 3), dtype=np.float32),
                                "next_scores.npy: next_items \\[4, 2\\] and next_scores"),
    "category past the end": ("item_category", np.array([0, 1, 0, -1], dtype=np.int32),
                              "item_category.npy: item_category refers to categories outside"),
}


@pytest.mark.parametrize("name, array, complaint", BAD_ARRAYS.values(), ids=BAD_ARRAYS)
def test_unusable_arrays_are_refused_though_their_checksums_match(tmp_path, name, array,
                                                                   complaint):
    path = save_model(make_model(), tmp_path)
    rewrite(path, name, array)
    with pytest.raises(ModelError, match=complaint) as refused:
        load_model(path)
    reason = str(refused.value)
    assert reason.startswith(f"{path.name}/{name}.npy")
    assert str(tmp_path) not in reason and "\n" not in reason


@pytest.mark.parametrize("cut, complaint", [
    (lambda data: data[:-5], "item_factors.npy is truncated: 171 bytes where .* needs 176"),
    (lambda data: data[:5], "item_factors.npy: no readable .npy header"),
    (lambda data: data + b"\0" * 8, "item_factors.npy is followed by stray bytes"),
])
def test_truncated_or_padded_npy_is_refused_though_its_checksum_matches(tmp_path, cut,
                                                                        complaint):
    path = save_model(make_model(), tmp_path)
    rewrite_bytes(path, "item_factors", cut((path / "item_factors.npy").read_bytes()))
    with pytest.raises(ModelError, match=complaint):
        load_model(path)


@pytest.mark.parametrize("params, complaint", [
    ({"regularization": float("nan")}, "params.regularization nan is not a finite number"),
    ({"regularization": -1.0}, "params.regularization -1.0 is not a finite number >= 0"),
    ({"factors": 3}, "params.regularization None"),
    ({"regularization": 0.1, "signal_weights": {"view": float("inf")}},
     "params.signal_weights must give a finite number"),
])
def test_training_parameters_scoring_reads_must_be_finite(tmp_path, params, complaint):
    path = save_model(make_model(), tmp_path)
    edit_meta(path, params=params)
    with pytest.raises(ModelError, match=complaint):
        load_model(path)


def test_refusals_name_files_relative_to_the_store(tmp_path):
    path = save_model(make_model(), tmp_path)
    (path / "similar_items.npy").unlink()
    with pytest.raises(ModelError) as refused:
        load_model(path)
    assert str(refused.value) == (f"{path.name}/similar_items.npy is missing or unreadable: "
                                  f"No such file or directory")


# --- Version names are real times; versions are ordered by creation time ------------------

@pytest.mark.parametrize("name, complaint", [
    ("99991231T235959Z-999999", "lies in the future"),
    ("20261399T000000Z-000000", "not a real UTC time"),
    ("20260230T120000Z-000000", "not a real UTC time"),
])
def test_a_future_or_impossible_version_name_is_not_saved(tmp_path, name, complaint):
    with pytest.raises(ModelError, match=complaint):
        save_model(make_model(name), tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_future_created_at_is_not_saved(tmp_path):
    model = make_model()
    model = Model(**{**vars(model),
                     "meta": {**model.meta, "created_at": "9999-01-01T00:00:00+00:00"}})
    with pytest.raises(ModelError, match="lies in the future"):
        save_model(model, tmp_path)


def test_version_time_parses_real_names_only():
    assert version_time("20261127T150102Z-000005") == datetime(2026, 11, 27, 15, 1, 2, 5,
                                                               tzinfo=UTC)
    for bad in ("../escape", "20261127T150102Z-00000", 20261127, None):
        with pytest.raises(ModelError, match="not of the form"):
            version_time(bad)


def copy_as(path: Path, name: str, **meta_changes) -> Path:
    """A copy of version ``path`` in the same store under ``name``, with meta.json edited."""
    copy = path.parent / name
    shutil.copytree(path, copy)
    edit_meta(copy, version=name, **meta_changes)
    return copy


def test_a_far_future_name_without_created_at_is_left_out_and_logged(tmp_path, caplog):
    path = save_model(make_model(), tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    del meta["created_at"]
    copy_as(path, "99991231T235959Z-999999")
    (tmp_path / "99991231T235959Z-999999" / "meta.json").write_text(
        json.dumps({**meta, "version": "99991231T235959Z-999999"}))
    copy_as(path, "20261399T000000Z-000000")
    with caplog.at_level("WARNING", logger="shared.model_store"):
        assert versions(tmp_path) == [path.name]
    assert "99991231T235959Z-999999" in caplog.text and "lies in the future" in caplog.text
    assert "not a real UTC time" in caplog.text
    later = save_model(make_model("20261127T160000Z-000000"), tmp_path)
    assert latest_version(tmp_path) == later.name
    assert prune(tmp_path, 1) == [path.name]
    assert (tmp_path / "99991231T235959Z-999999").is_dir()  # never deleted: not a version


def test_a_far_future_created_at_is_left_out_and_refused(tmp_path, caplog):
    path = save_model(make_model(), tmp_path)
    future = copy_as(path, "20261127T150103Z-000000", created_at="9999-12-31T23:59:59+00:00")
    with caplog.at_level("WARNING", logger="shared.model_store"):
        assert versions(tmp_path) == [path.name]
    assert "20261127T150103Z-000000" in caplog.text
    with pytest.raises(ModelError, match="lies in the future"):
        load_model(future)


def test_created_at_without_a_time_zone_is_refused(tmp_path):
    path = save_model(make_model(), tmp_path)
    edit_meta(path, created_at="2026-11-27T15:01:02")
    with pytest.raises(ModelError, match="not an ISO time with a time zone"):
        load_model(path)


def test_versions_are_ordered_by_created_at_not_by_name(tmp_path):
    early_name = make_model("20261127T150000Z-000000")
    late_name = make_model("20261127T160000Z-000000")
    save_model(Model(**{**vars(early_name), "meta": {**early_name.meta,
                                                     "created_at": "2026-11-28T00:00:00+00:00"}}),
               tmp_path)
    save_model(Model(**{**vars(late_name), "meta": {**late_name.meta,
                                                    "created_at": "2026-11-27T00:00:00+00:00"}}),
               tmp_path)
    assert versions(tmp_path) == [late_name.version, early_name.version]
    assert latest_version(tmp_path) == early_name.version
    assert load_latest(tmp_path).version == early_name.version
    assert prune(tmp_path, 1) == [late_name.version]


def test_a_far_future_name_with_a_real_created_at_does_not_outrank_later_versions(tmp_path):
    path = save_model(make_model(), tmp_path)
    copy_as(path, "99991231T235959Z-999999")  # created_at copied: that of ``path``
    later = save_model(Model(**{**vars(make_model("20261127T160000Z-000000")),
                                "meta": {"params": {"regularization": 0.05},
                                         "created_at": "2026-11-27T16:00:00+00:00"}}), tmp_path)
    assert versions(tmp_path) == [path.name, "99991231T235959Z-999999", later.name]
    assert latest_version(tmp_path) == later.name


def test_missing_created_at_orders_by_the_name(tmp_path):
    first = save_model(make_model("20261127T150000Z-000000"), tmp_path)
    second = save_model(make_model("20261127T140000Z-000000"), tmp_path)
    for path in (first, second):
        meta = json.loads((path / "meta.json").read_text())
        del meta["created_at"]
        (path / "meta.json").write_text(json.dumps(meta))
    assert versions(tmp_path) == [second.name, first.name]
    assert creation_time(first) == version_time(first.name)


def test_saved_created_at_defaults_to_the_time_of_the_name(tmp_path):
    path = save_model(make_model("20261127T150102Z-000001"), tmp_path)
    assert json.loads((path / "meta.json").read_text())["created_at"] == "2026-11-27T15:01:02+00:00"


# --- A symlinked version is a version; pruning it removes the link only -------------------

def test_a_symlinked_version_is_listed_loaded_and_pruned_as_a_link(tmp_path):
    elsewhere = save_model(make_model("20261127T150000Z-000000"), tmp_path / "elsewhere")
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(elsewhere, store / elsewhere.name)
    newer = save_model(make_model("20261127T160000Z-000000"), store)
    assert versions(store) == [elsewhere.name, newer.name]
    assert load_model(store / elsewhere.name).version == elsewhere.name
    assert prune(store, 1) == [elsewhere.name]
    assert not os.path.lexists(store / elsewhere.name)
    assert load_model(elsewhere).version == elsewhere.name  # the target is left alone


# --- Temporary folders of killed saves are removed at the next save -----------------------

ROOT = Path(__file__).resolve().parents[2]
HANGING_SAVE = """
import dataclasses, sys, time
import shared.model_store as store
from shared.scoring.example import _example_model

real_write = store._write_array

def write_then_hang(path, array):
    entry = real_write(path, array)
    print("writing", flush=True)
    time.sleep(600)
    return entry

store._write_array = write_then_hang
store.save_model(dataclasses.replace(_example_model(), version=sys.argv[2]), sys.argv[1])
"""


@pytest.fixture
def hanging_save(tmp_path):
    """Start a save in another process that stops after its first file; yield the process."""
    process = subprocess.Popen([sys.executable, "-c", HANGING_SAVE, str(tmp_path),
                                "20261127T150105Z-000000"], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline() == "writing\n"
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def temps(store: Path) -> list[str]:
    return sorted(p.name for p in store.glob(".tmp-*"))


def test_the_next_save_removes_the_temporary_folder_of_a_killed_save(tmp_path, hanging_save):
    hanging_save.kill()
    hanging_save.wait()
    assert len(temps(tmp_path)) == 1
    save_model(make_model(), tmp_path)
    assert temps(tmp_path) == []
    assert versions(tmp_path) == [make_model().version]


def test_a_save_running_in_another_process_keeps_its_temporary_folder(tmp_path, hanging_save):
    running = temps(tmp_path)
    assert len(running) == 1
    save_model(make_model(), tmp_path)
    prune(tmp_path, 1)
    assert temps(tmp_path) == running
    hanging_save.kill()
    hanging_save.wait()
    prune(tmp_path, 1)
    assert temps(tmp_path) == []


def test_a_temporary_folder_without_owner_file_is_removed_after_an_hour(tmp_path):
    fresh, old = tmp_path / ".tmp-fresh", tmp_path / ".tmp-old"
    fresh.mkdir()
    old.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert remove_abandoned_temps(tmp_path) == [".tmp-old"]
    assert temps(tmp_path) == [".tmp-fresh"]


def test_a_saved_version_keeps_no_owner_file(tmp_path):
    path = save_model(make_model(), tmp_path)
    assert not any(p.name.startswith(".owner") for p in path.iterdir())


def test_a_file_system_without_flock_still_saves(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(store_module.fcntl, "flock", no_locks)
    path = save_model(make_model(), tmp_path)
    monkeypatch.undo()
    assert load_model(path).version == path.name and temps(tmp_path) == []
