"""The synthetic shop: exact, deterministic, contract-shaped events that follow their ground truth."""
from __future__ import annotations

import json

import numpy as np
import pytest

from batch.synthetic import ShopParams, generate_columns, load_truth, truth_dir
from batch.synthetic_file import main, write_jsonl
from shared.events import EVENT_TYPE_CODES, EVENT_TYPES

PARAMS = ShopParams(n_items=300, n_categories=15)
N_EVENTS = 20_003  # not a multiple of CHUNK: the last chunk is short
CHUNK = 5_000      # several chunks, so events carry over chunk windows
REQUIRED = {"event_id", "session_id", "item_id", "type", "ts", "category", "price"}


def _read(path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(path, events, truth) of one small run."""
    path = tmp_path_factory.mktemp("synthetic") / "events.jsonl"
    truth = write_jsonl(path, N_EVENTS, seed=11, params=PARAMS, chunk_events=CHUNK)
    return path, _read(path), truth


@pytest.fixture(scope="module")
def views(written):
    """Views as arrays: session code, category code, and the session's preferred categories."""
    _, events, truth = written
    rows = [e for e in events if e["type"] == "view"]
    session = np.array([int(e["session_id"][1:]) for e in rows])
    category = np.array([int(e["category"][1:]) for e in rows])
    return session, category, truth.session_categories[session]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    for path, seed in zip(paths, (5, 5, 6)):
        write_jsonl(path, 3_000, seed=seed, params=PARAMS, chunk_events=1_000)
    first, again, other = (p.read_bytes() for p in paths)
    assert first == again
    assert first != other
    for name in ("session_categories.npy", "item_category.npy", "user_categories.npy"):
        assert (truth_dir(paths[0]) / name).read_bytes() == (truth_dir(paths[1]) / name).read_bytes()


@pytest.mark.parametrize("n_events", [0, 1, 999, 1_000, 2_501])
def test_counts_are_exact(tmp_path, n_events):
    path = tmp_path / "events.jsonl"
    write_jsonl(path, n_events, seed=1, params=PARAMS, chunk_events=1_000)
    columns, _ = generate_columns(n_events, seed=1, params=PARAMS, chunk_events=1_000)
    assert len(path.read_bytes().splitlines()) == n_events
    assert len(columns) == n_events


def test_every_line_is_a_contract_event(written):
    path, events, _ = written
    assert all(line.startswith(b"{") and b" " not in line for line in path.read_bytes().splitlines())
    for event in events:
        assert REQUIRED <= event.keys() <= REQUIRED | {"user_id", "dwell_ms", "quantity"}
        assert all(isinstance(event[k], str) for k in ("event_id", "session_id", "item_id", "category"))
        assert event["type"] in EVENT_TYPES
        assert isinstance(event["ts"], int) and isinstance(event["price"], float)
        assert event["price"] > 0
        assert ("dwell_ms" in event) == (event["type"] == "view")
        assert ("quantity" in event) == (event["type"] in ("add_to_cart", "buy"))
        assert isinstance(event.get("dwell_ms", 0), int) and event.get("dwell_ms", 0) >= 0
        assert isinstance(event.get("quantity", 1), int) and event.get("quantity", 1) >= 1
    assert len({e["event_id"] for e in events}) == len(events)


def test_anonymous_visitors_and_returning_logged_in_users_are_both_present(written):
    _, events, _ = written
    logged_in = [e for e in events if "user_id" in e]
    anonymous_sessions = {e["session_id"] for e in events if "user_id" not in e}
    assert 0.1 * len(events) < len(logged_in) < 0.9 * len(events)
    sessions_per_user = {}
    for event in logged_in:
        sessions_per_user.setdefault(event["user_id"], set()).add(event["session_id"])
    assert np.mean([len(s) for s in sessions_per_user.values()]) > 2
    assert not anonymous_sessions & {e["session_id"] for e in logged_in}


def test_columns_are_the_written_events_with_session_ids_for_anonymous_users(written):
    path, events, truth = written
    columns, column_truth = generate_columns(N_EVENTS, seed=11, params=PARAMS, chunk_events=CHUNK)
    assert columns.user_ids[columns.user].tolist() == [e.get("user_id", e["session_id"])
                                                        for e in events]
    assert columns.session_ids[columns.session].tolist() == [e["session_id"] for e in events]
    assert columns.item_ids[columns.item].tolist() == [e["item_id"] for e in events]
    assert [EVENT_TYPES[t] for t in columns.type] == [e["type"] for e in events]
    assert columns.ts_ms.tolist() == [e["ts"] for e in events]
    assert columns.dwell_ms.tolist() == [e.get("dwell_ms", -1) for e in events]
    assert columns.categories[columns.item_category[columns.item]].tolist() == [
        e["category"] for e in events]
    np.testing.assert_array_equal(column_truth.session_categories, truth.session_categories)


@pytest.mark.parametrize("rates", [(0.30, 0.06, 0.02), (0.5, 0.1, 0.01)])
def test_rates_per_view_follow_the_parameters(rates):
    click, cart, buy = rates
    params = ShopParams(n_items=300, n_categories=15, click_rate=click, add_to_cart_rate=cart,
                        buy_rate=buy)
    columns, _ = generate_columns(40_000, seed=2, params=params, chunk_events=10_000)
    counts = np.bincount(columns.type, minlength=len(EVENT_TYPES))
    per_view = counts / counts[EVENT_TYPE_CODES["view"]]
    np.testing.assert_allclose(per_view[1:], rates, rtol=0.15)


def test_buys_follow_an_add_to_cart_of_the_same_item_in_the_session(written):
    _, events, _ = written
    carted = {}
    for event in events:
        key = (event["session_id"], event["item_id"])
        if event["type"] == "add_to_cart":
            carted.setdefault(key, event["ts"])
        elif event["type"] == "buy":
            assert key in carted and carted[key] <= event["ts"]


def test_views_stay_mostly_in_the_shoppers_preferred_categories(views):
    session, category, preferred = views
    in_preferred = (preferred == category[:, None]).any(axis=1).mean()
    shuffled = preferred[np.random.default_rng(0).permutation(len(preferred))]
    chance = (shuffled == category[:, None]).any(axis=1).mean()
    assert in_preferred > 0.8
    assert in_preferred > 2 * chance


def test_a_session_tends_to_stay_in_one_category(views):
    session, category, _ = views
    order = np.argsort(session, kind="stable")
    same_session = session[order][1:] == session[order][:-1]
    same_category = category[order][1:] == category[order][:-1]
    assert same_category[same_session].mean() > 0.75


def test_times_are_ordered_and_within_the_days(written):
    _, events, _ = written
    ts = np.array([e["ts"] for e in events])
    assert (np.diff(ts) >= 0).all()
    assert PARAMS.start_ms <= ts[0]
    assert ts[-1] < PARAMS.start_ms + (PARAMS.days + 1) * 86_400_000
    assert ts[-1] - ts[0] > 0.9 * PARAMS.days * 86_400_000


def test_dwell_times_are_spread(written):
    _, events, _ = written
    dwell = np.array([e["dwell_ms"] for e in events if e["type"] == "view"])
    low, median, high = np.percentile(dwell, [10, 50, 90])
    assert 3 * low < median < high / 3
    assert 0.5 * PARAMS.dwell_median_ms < median < 2 * PARAMS.dwell_median_ms


def test_popular_items_get_most_views(written):
    _, events, truth = written
    item = np.array([int(e["item_id"][1:]) for e in events if e["type"] == "view"])
    top = truth.item_rank < PARAMS.n_items // 10
    assert np.isin(item, np.flatnonzero(top)).mean() > 0.4


def test_truth_loads_and_matches_the_events(written):
    path, events, truth = written
    loaded = load_truth(path)
    for name, value in vars(truth).items():
        if name == "meta":
            assert value == loaded.meta
        else:
            np.testing.assert_array_equal(value, getattr(loaded, name))
    assert loaded.meta["n_sessions"] == len(loaded.session_user) == len({e["session_id"] for e in events})
    for event in events[::37]:
        item = int(event["item_id"][1:])
        assert event["category"] == f"c{loaded.item_category[item]}"
        assert event["price"] == pytest.approx(loaded.item_price[item])
        owner = loaded.session_user[int(event["session_id"][1:])]
        assert event.get("user_id") == (f"u{owner}" if owner >= 0 else None)
    np.testing.assert_array_equal(np.sort(loaded.item_rank), np.arange(PARAMS.n_items))
    assert loaded.item_popularity.sum() == pytest.approx(1.0)
    assert (np.diff(loaded.item_popularity[np.argsort(loaded.item_rank)]) <= 0).all()


def test_preferred_categories_are_found_by_user_id(written):
    _, _, truth = written
    logged_in = int(np.flatnonzero(truth.session_user >= 0)[0])
    anonymous = int(np.flatnonzero(truth.session_user < 0)[0])
    user = truth.session_user[logged_in]
    found = truth.preferred_categories([f"u{user}", f"s{anonymous}"])
    np.testing.assert_array_equal(found, [truth.user_categories[user],
                                          truth.session_categories[anonymous]])
    np.testing.assert_array_equal(truth.session_categories[logged_in], truth.user_categories[user])


def test_params_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="buy_rate"):
        ShopParams(add_to_cart_rate=0.01, buy_rate=0.02)
    with pytest.raises(ValueError, match="n_items"):
        ShopParams(n_items=5, n_categories=10)


def test_command_line_writes_events_and_truth_and_reports_progress(tmp_path, capsys):
    path = tmp_path / "cli.jsonl"
    assert main(["--events", "1500", "--seed", "4", "--out", str(path), "--n-items", "100",
                 "--n-categories", "8", "--chunk-events", "500"]) == 0
    assert len(_read(path)) == 1500
    assert load_truth(path).meta["params"]["n_items"] == 100
    assert "events/s" in capsys.readouterr().err
