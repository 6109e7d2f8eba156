"""Retrain: a model from events, parity with the ALS user step, a store left intact on failure."""
import argparse
import dataclasses
import fcntl
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

import batch.retrain as retrain_module
import shared.model_store as store_module
from batch.columns import EventColumns
from batch.matrix import build_interactions
from batch.retrain import (RetrainError, add_arguments, fit_als, input_store, retrain, run,
                           schedule_of, store_of, train_model)
from batch.schedule import Cron, Every
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from recsys.cli import main
from shared.config import ConfigError, load_settings
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


# --- where `recsys retrain --input` writes, and the command line's schedules ----------------

def retrain_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def small_settings(live, **overrides):
    """Settings of a quick retrain whose live store (RECSYS_MODEL_DIR) is ``live``."""
    return load_settings({}, model_dir=str(live), als_factors=4, als_iterations=2, similar_k=3,
                         **overrides)


def test_input_store_is_beside_the_live_one_and_named_after_the_file(tmp_path):
    assert input_store("var/models", "data/yoochoose-100k/train_full.txt") == (
        Path("var/models-train_full"))
    assert input_store(tmp_path / "models", "/x/shop.events.jsonl.gz") == tmp_path / "models-shop"
    assert input_store(tmp_path / "models" / "", ".hidden.jsonl") == tmp_path / "models-hidden"


@pytest.mark.parametrize("argv, expected, live", [
    ([], "models", True),
    (["--input", "f/events.jsonl"], "models-events", False),
    (["--input", "f/events.jsonl", "--store", "other"], "other", False),
    (["--store", "other"], "other", False),
    (["--input", "f/events.jsonl", "--store", "models"], "models", True),
    (["--input", "f/events.jsonl", "--store", "linked"], "linked", True),  # a link to models
    (["--input", "f/events.jsonl", "--store", "sub/../models/"], "sub/../models", True),
])
def test_the_store_of_a_retrain_and_whether_it_is_the_live_one(tmp_path, monkeypatch, argv,
                                                               expected, live):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "models", tmp_path / "linked")
    store, is_live = store_of(retrain_args(*argv), load_settings({}, model_dir="models"))
    assert (store, is_live) == (Path(expected), live)


def test_a_retrain_from_a_file_goes_to_its_own_store_and_leaves_the_live_one(tmp_path, capsys):
    """The live version survives (keep_versions=1 would have pruned it) and stays the newest."""
    live = tmp_path / "models"
    _, current = retrain(shop_columns(), live, params=PARAMS, progress=False)
    write_jsonl(tmp_path / "events.jsonl", shop_columns(seed=3))
    args = retrain_args("--input", str(tmp_path / "events.jsonl"))
    assert run(args, small_settings(live, keep_versions=1)) == 0
    assert versions(live) == [current.name]
    separate = tmp_path / "models-events"
    model = load_latest(separate)
    assert model.meta["data"]["source"]["path"] == str((tmp_path / "events.jsonl").resolve())
    err = capsys.readouterr().err
    assert (f"recsys retrain: writing to {separate}, not to the live store {live}"
            f" (RECSYS_MODEL_DIR) that workers load from; the version is not announced"
            f" (--store {live} writes into the live store)") in err
    assert f"saved to      {separate / model.version}" in err


def test_announcing_a_version_outside_the_live_store_is_refused(tmp_path, capsys):
    write_jsonl(tmp_path / "events.jsonl", shop_columns())
    live = tmp_path / "models"
    for argv in (["--input", str(tmp_path / "events.jsonl"), "--announce"],
                 ["--input", str(tmp_path / "events.jsonl"), "--store", str(tmp_path / "x"),
                  "--announce"],
                 ["--store", str(tmp_path / "x"), "--announce"]):
        assert run(retrain_args(*argv), small_settings(live)) == 2
        err = capsys.readouterr().err
        assert "--announce tells the workers to load the new version, but" in err
        assert f"--store {live}" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_a_retrain_from_a_file_into_the_named_live_store_writes_there(tmp_path, capsys):
    """--no-announce: no broker is needed; the announcement itself is tested against Kafka."""
    live = tmp_path / "models"
    _, current = retrain(shop_columns(), live, params=PARAMS, progress=False)
    write_jsonl(tmp_path / "events.jsonl", shop_columns(seed=3))
    args = retrain_args("--input", str(tmp_path / "events.jsonl"), "--store", f"{live}/",
                        "--no-announce")
    assert run(args, small_settings(live, keep_versions=1)) == 0
    assert versions(live) == [load_latest(live).version] != [current.name]
    assert not (tmp_path / "models-events").exists()
    assert "not to the live store" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, complaint", [
    (["--cron", "61 * * * *"], "cron expression '61 * * * *': minute '61' is not valid; write 0-59"),
    (["--cron", "* * *"], "has 3 field(s), not 5"),
    (["--cron", "@fortnightly"], "@fortnightly is not an @ form"),
    (["--every", "30"], "interval '30' is not a number followed by s, m or h"),
])
def test_a_bad_schedule_is_a_one_line_config_error(tmp_path, argv, complaint, capsys,
                                                   monkeypatch):
    with pytest.raises(ConfigError) as caught:
        run(retrain_args(*argv), small_settings(tmp_path / "models"))
    assert complaint in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setenv("RECSYS_MODEL_DIR", str(tmp_path / "models"))
    assert main(["retrain", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"recsys retrain: {caught.value}\n"
    assert not (tmp_path / "models").exists()


def test_an_unknown_retrain_zone_stops_the_command_with_one_line_naming_it(tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setenv("RECSYS_RETRAIN_TIMEZONE", "Europe/Berln")
    assert main(["retrain", "--cron", "@daily"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys retrain: RECSYS_RETRAIN_TIMEZONE='Europe/Berln' is out of"
                          " range: it must be an IANA time zone name") and err.count("\n") == 1


def test_the_schedule_of_the_command_line_is_in_the_configured_zone():
    settings = load_settings({"RECSYS_RETRAIN_TIMEZONE": "Europe/Berlin"})
    cron = schedule_of(retrain_args("--cron", "0 3 * * MON"), settings)
    assert cron == Cron("0 3 * * mon", ZoneInfo("Europe/Berlin"))
    assert schedule_of(retrain_args("--every", "2h"), settings) == Every(7200.0,
                                                                         ZoneInfo("Europe/Berlin"))
    assert schedule_of(retrain_args(), settings) is None
