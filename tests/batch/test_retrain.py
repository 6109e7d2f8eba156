"""Retrain: a model from events, parity with the ALS user step, a store left intact on failure."""
import argparse
import dataclasses
import fcntl
import json
import os
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

import batch.retrain as retrain_module
import shared.model_store as store_module
from batch.columns import EventColumns
from batch.matrix import build_interactions
from batch.retrain import RetrainError, add_arguments, fit_als, retrain, run, train_model
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.config import load_settings
from shared.events import EVENT_TYPES
from shared.model import ARRAY_FIELDS
from shared.model_store import load_latest, load_model, versions
from shared.signals import SignalWeights

WEIGHTS = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25,
                        add_to_cart=0.5, buy=1.0, alpha=15.0)
PARAMS = TrainingParams(weights=WEIGHTS, factors=4, regularization=0.1, iterations=4,
                        similar_k=3, num_threads=1)


def shop_columns(n_events=400, n_users=20, n_items=10, seed=0) -> EventColumns:
    """Users 0..9 favour items 0..4 (category 0), users 10..19 items 5..9 (category 1)."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n_events)
    half = n_items // 2
    favoured = rng.random(n_events) < 0.9
    base = np.where((user < n_users // 2) == favoured, 0, half)
    item = base + rng.integers(0, half, n_events)
    return EventColumns(
        user=user, session=user * 3 + rng.integers(0, 3, n_events), item=item,
        type=rng.choice(4, n_events, p=[0.7, 0.2, 0.07, 0.03]).astype(np.int8),
        ts_ms=np.sort(rng.integers(1_700_000_000_000, 1_700_000_100_000, n_events)),
        dwell_ms=rng.integers(-1, 90_000, n_events).astype(np.int32),
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        session_ids=np.array([f"s{i}" for i in range(n_users * 3)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_category=(np.arange(n_items) >= half).astype(np.int32),
        categories=np.array(["left", "right"]))


def test_model_has_every_array_and_the_meta_layout():
    model = train_model(shop_columns(), params=PARAMS, source={"kind": "test"}, progress=False)
    assert model.item_ids.tolist() == [f"i{i}" for i in range(10)]
    assert model.item_factors.shape == (10, 4) and model.item_factors.dtype == np.float32
    for name in ("similar", "cooc", "next"):
        assert getattr(model, f"{name}_items").shape == (10, 3)
        assert getattr(model, f"{name}_scores").dtype == np.float32
    assert model.item_category.tolist() == [0] * 5 + [1] * 5
    assert model.popularity.sum() == 400
    meta = model.meta
    assert meta["version"] == model.version
    assert meta["params"]["regularization"] == 0.1 and meta["params"]["alpha"] == 15.0
    assert meta["params"]["signal_weights"] == WEIGHTS.as_dict()
    assert meta["counts"]["events_read"] == 400 and meta["counts"]["items"] == 10
    assert meta["counts"]["users"] == 20 and meta["counts"]["sessions"] <= 60
    assert meta["data"]["source"] == {"kind": "test"}
    assert meta["data"]["min_ts_ms"] >= 1_700_000_000_000
    assert list(meta["timings_s"]) == list(retrain_module.STEPS)


def test_similar_items_stay_in_the_favoured_category():
    model = train_model(shop_columns(n_events=600, n_users=50, n_items=40),
                        params=dataclasses.replace(PARAMS, iterations=10), progress=False)
    same = model.item_category[model.similar_items] == model.item_category[:, None]
    assert same.mean() >= 0.9  # chance: 19 of the 39 other items


def test_similar_items_share_the_synthetic_shops_category_far_above_chance():
    columns, truth = generate_columns(20_000, seed=1, params=ShopParams(n_items=200,
                                                                        n_categories=10))
    model = train_model(columns, params=dataclasses.replace(PARAMS, factors=16, iterations=10,
                                                            similar_k=10), progress=False)
    category = truth.item_category[np.strings.slice(model.item_ids, 1, None).astype(int)]
    same = (category[model.similar_items] == category[:, None]).mean()
    sizes = np.bincount(category)
    chance = ((sizes[category] - 1) / (len(category) - 1)).mean()
    assert chance < 0.15
    assert same >= 0.85  # measured 0.94


def test_same_input_gives_the_same_model():
    first = train_model(shop_columns(), params=PARAMS, progress=False)
    second = train_model(shop_columns(), params=dataclasses.replace(PARAMS, num_threads=2),
                         progress=False)
    for name in ARRAY_FIELDS:
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes(), name


def test_implicit_user_step_is_the_hand_computed_fold_in():
    """implicit reads the stored matrix values as c_ui = 1 + alpha * r_ui and uses λ unscaled.

    x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u, computed here from the raw events, must
    equal implicit's exact user solve against the trained item factors.
    """
    columns = shop_columns()
    interactions = build_interactions(columns, WEIGHTS)
    regularization = 5.0  # large, so that a λ scaled by the user's item count would show
    als = fit_als(interactions.user_items, factors=4, regularization=regularization,
                  iterations=4, num_threads=1)
    y = als.item_factors.astype(np.float64)
    for row in (0, 7, 13):
        mine = columns.user == interactions.users[row]
        r = WEIGHTS.preference(columns.type[mine], columns.dwell_ms[mine]).astype(np.float64)
        summed = np.bincount(interactions.item_index[columns.item[mine]], weights=r,
                             minlength=len(y))
        c = 1.0 + WEIGHTS.alpha * summed
        p = (summed > 0).astype(np.float64)
        a = y.T @ (c[:, None] * y) + regularization * np.eye(4)
        expected = np.linalg.solve(a, y.T @ (c * p))
        actual = als.recalculate_user(row, interactions.user_items[row])
        np.testing.assert_allclose(actual, expected, atol=1e-4)


EVENT_FIELDS = ("user", "session", "item", "type", "ts_ms", "dwell_ms")


@pytest.mark.parametrize("changes, reason", [
    ({name: getattr(shop_columns(), name)[:0] for name in EVENT_FIELDS}, "no events"),
    ({"item": np.full(400, 99)}, "none of the 400 events is usable"),
    ({"item": np.full(400, 3)}, "only 1 item"),
    ({"dwell_ms": np.zeros(3, dtype=np.int32)}, "differ in length"),
])
def test_unusable_input_fails_before_the_store_is_touched(tmp_path, changes, reason):
    store = tmp_path / "models"
    with pytest.raises(RetrainError, match=reason):
        retrain(dataclasses.replace(shop_columns(), **changes), store, params=PARAMS, progress=False)
    assert not store.exists()


def test_retrain_saves_a_loadable_version_and_prunes(tmp_path):
    paths = [retrain(shop_columns(seed=s), tmp_path, keep_versions=2, params=PARAMS, progress=False)[1]
             for s in range(3)]
    assert versions(tmp_path) == [p.name for p in paths[1:]]
    loaded = load_model(paths[-1])
    assert loaded.meta["counts"]["events_read"] == 400
    assert load_latest(tmp_path).version == paths[-1].name


def test_failed_retrain_keeps_the_current_model(tmp_path, monkeypatch):
    _, current = retrain(shop_columns(), tmp_path, params=PARAMS, progress=False)

    def broken(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(retrain_module, "sequence_neighbours", broken)
    with pytest.raises(MemoryError):
        retrain(shop_columns(seed=1), tmp_path, params=PARAMS, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [current.name]
    assert load_latest(tmp_path).version == current.name


def test_progress_and_summary_go_to_stderr(tmp_path, capsys):
    model, _ = retrain(shop_columns(), tmp_path, params=PARAMS, progress=True)
    err = capsys.readouterr().err
    assert "als iteration 4/4" in err
    assert f"retrain: version {model.version}" in err
    assert "400 read, 400 used" in err


def write_jsonl(path, columns: EventColumns) -> None:
    lines = []
    for row in range(len(columns)):
        event = {"event_id": f"e{row}", "user_id": str(columns.user_ids[columns.user[row]]),
                 "session_id": str(columns.session_ids[columns.session[row]]),
                 "item_id": str(columns.item_ids[columns.item[row]]),
                 "type": EVENT_TYPES[columns.type[row]], "ts": int(columns.ts_ms[row])}
        if columns.dwell_ms[row] >= 0:
            event["dwell_ms"] = int(columns.dwell_ms[row])
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")


def test_command_reads_the_input_and_publishes(tmp_path):
    write_jsonl(tmp_path / "events.jsonl", shop_columns())
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--input", str(tmp_path / "events.jsonl"),
                              "--store", str(tmp_path / "store")])
    settings = load_settings({}, als_factors=4, als_iterations=2, similar_k=3)
    assert run(args, settings) == 0
    model = load_latest(tmp_path / "store")
    assert model.meta["data"]["source"]["format"] == "jsonl"
    assert model.meta["data"]["source"]["rows_read"] == 400
    assert model.meta["counts"]["events_used"] == 400
    assert model.meta["params"]["factors"] == 4


def test_command_reports_a_missing_input(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--input", str(tmp_path / "absent.jsonl"),
                              "--store", str(tmp_path / "store")])
    assert run(args, load_settings({})) == 2
    assert "recsys retrain:" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_training_params_from_settings():
    params = TrainingParams.from_settings(load_settings({}, als_regularization=0.5))
    assert params.regularization == 0.5
    assert params.weights == SignalWeights.from_settings(load_settings({}))


def test_training_params_are_recorded_in_meta_and_read_back():
    model = train_model(shop_columns(), params=PARAMS, progress=False)
    recorded = dict(model.meta["params"])
    assert recorded.pop("implicit_version")
    assert recorded == PARAMS.as_dict()
    # num_threads does not change the model, so meta.json leaves it out.
    assert TrainingParams.from_meta(model.meta) == dataclasses.replace(PARAMS, num_threads=0)
    with pytest.raises(ValueError, match="similar_k"):
        TrainingParams.from_meta({"params": {k: v for k, v in recorded.items() if k != "similar_k"}})


def test_training_params_updated_takes_the_reported_names_only():
    updated = PARAMS.updated({"alpha": 40, "factors": 8, "num_threads": 5, "unknown": 1})
    assert updated == dataclasses.replace(PARAMS, weights=dataclasses.replace(WEIGHTS, alpha=40.0),
                                          factors=8)
    assert isinstance(updated.alpha, float)
    assert updated.reported() == {"alpha": 40.0, "factors": 8, "regularization": 0.1,
                                  "iterations": 4, "similar_k": 3}


def test_gpu_without_cuda_is_a_clear_error():
    import implicit.gpu
    if implicit.gpu.HAS_CUDA:
        pytest.skip("this implicit has CUDA")
    with pytest.raises(RetrainError, match="no CUDA"):
        train_model(shop_columns(), params=dataclasses.replace(PARAMS, use_gpu=True),
                    progress=False)


def _leftover_temp(store, name, *, owner_alive):
    """A save's temporary folder as it looks mid-save: its owner file, locked while it lives."""
    tmp = store / f".tmp-{name}"
    tmp.mkdir(parents=True)
    owner = open(tmp / store_module._OWNER_FILE, "w")
    if owner_alive:
        fcntl.flock(owner, fcntl.LOCK_EX)
        return owner
    owner.close()  # a killed process's lock is gone with it
    return None


def test_retrain_removes_temporary_folders_of_killed_saves_not_of_running_ones(tmp_path):
    _leftover_temp(tmp_path, "killed", owner_alive=False)
    running = _leftover_temp(tmp_path, "running", owner_alive=True)
    try:
        _, path = retrain(shop_columns(), tmp_path, params=PARAMS, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-running", path.name]
    finally:
        running.close()
    retrain(shop_columns(seed=1), tmp_path, keep_versions=1, params=PARAMS, progress=False)
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_stray_far_future_version_does_not_make_retrain_prune_the_new_one(tmp_path):
    """The stray says it was made an hour ago; ordered as strings, it outranked every version."""
    _, first = retrain(shop_columns(), tmp_path, params=PARAMS, progress=False)
    stray = tmp_path / "99991231T235959Z-999999"
    shutil.copytree(first, stray)
    meta = json.loads((stray / "meta.json").read_text())
    an_hour_ago = datetime.fromisoformat(meta["created_at"]) - timedelta(hours=1)
    (stray / "meta.json").write_text(json.dumps({**meta, "version": stray.name,
                                                 "created_at": an_hour_ago.isoformat()}))
    model, path = retrain(shop_columns(seed=1), tmp_path, keep_versions=1, params=PARAMS, progress=False)
    assert versions(tmp_path) == [path.name]
    assert load_latest(tmp_path).version == model.version
    assert not stray.exists() and not first.exists()  # both older by created_at


def test_retrain_prunes_a_symlinked_version_by_removing_the_link(tmp_path):
    _, elsewhere = retrain(shop_columns(), tmp_path / "elsewhere", params=PARAMS, progress=False)
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(elsewhere, store / elsewhere.name)
    _, path = retrain(shop_columns(seed=1), store, keep_versions=1, params=PARAMS, progress=False)
    assert [p.name for p in store.iterdir()] == [path.name]
    assert load_model(elsewhere).version == elsewhere.name
