"""Evaluation: exact metrics, the peers' published figures, replay = the worker's path, the report."""
import argparse
import json

import numpy as np
import pytest

from batch.columns import EventColumns
from batch.evaluate import (KS, add_arguments, average_precision_at, coverage, evaluate_original,
                            metrics_from_ranks, next_item_truth, params_from_json, rank_of,
                            read_peer_lists, read_peers, replay_next_item, run, score_lists,
                            write_lists, write_report)
from batch.readers import REFERENCE_DATA_DIR, read_events
from shared.config import load_settings
from shared.events import EVENT_TYPE_CODES
from shared.model import Model
from shared.scoring import (History, ScoringParams, Session, SourceWeights, add_to_history,
                            add_to_session, score_event)
from shared.signals import SignalWeights

YOOCHOOSE = REFERENCE_DATA_DIR / "yoochoose-100k"
WEIGHTS = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25,
                        add_to_cart=0.5, buy=1.0, alpha=15.0)
needs_data = pytest.mark.skipif(not (YOOCHOOSE / "peers").is_dir(),
                                reason="reference data not present")


# ---------------------------------------------------------------------------
# Metrics on hand-made lists
# ---------------------------------------------------------------------------

def test_metrics_from_ranks_exact():
    m = metrics_from_ranks(np.array([1, 3, 0, 7, 20, 21]), ks=(1, 5, 20))
    assert m["positions"] == 6
    assert m["hr@1"] == round(1 / 6, 4)
    assert m["hr@5"] == round(2 / 6, 4)
    assert m["hr@20"] == round(4 / 6, 4)
    assert m["mrr@5"] == round((1 + 1 / 3) / 6, 4)
    assert m["mrr@20"] == round((1 + 1 / 3 + 1 / 7 + 1 / 20) / 6, 4)
    assert m["ndcg@5"] == round((1 + 1 / np.log2(4)) / 6, 4)
    assert m["ndcg@20"] == round((1 + 1 / np.log2(4) + 1 / np.log2(8) + 1 / np.log2(21)) / 6, 4)
    assert set(metrics_from_ranks(np.array([], dtype=int))) >= {f"hr@{k}" for k in KS}


def test_rank_ap_and_coverage():
    assert rank_of("c", ["a", "b", "c"]) == 3 and rank_of("d", ["a"]) == 0
    # Hits at 1 and 3 of 2 relevant: (1/1 + 2/3) / 2.
    assert average_precision_at(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx((1 + 2 / 3) / 2)
    # Truth larger than k divides by k; hits after k do not count.
    assert average_precision_at(["x", "a", "b", "c"], {"a", "b", "c", "d"}, 3) == \
        pytest.approx((1 / 2 + 2 / 3) / 3)
    assert average_precision_at(["a", "a"], {"a"}, 3) == 1.0
    assert coverage([["a", "b"], ["c"]], 6) == 0.5


def test_score_lists_counts_missing_keys_as_misses():
    truth = {("1", 0): "b", ("1", 1): "c", ("2", 0): "z"}
    lists = {("1", 0): ["a", "b"], ("1", 1): ["c"]}
    m = score_lists(lists, truth, n=20, ks=(1, 20))
    assert m["hr@20"] == round(2 / 3, 4) and m["mrr@20"] == round(1.5 / 3, 4)
    assert m["hr@1"] == round(1 / 3, 4)


# ---------------------------------------------------------------------------
# The peers' published figures, from their own lists
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_truth():
    columns, _ = read_events(YOOCHOOSE / "test.txt")
    return columns, next_item_truth(columns)


@needs_data
def test_peer_positions_are_the_first_99_sessions(test_truth):
    columns, truth = test_truth
    peers = read_peers(YOOCHOOSE / "peers")
    assert sorted(peers) == ["ar", "gru4rec", "sr", "vsknn"]
    first_sessions = list(dict.fromkeys(columns.session_ids[columns.session].tolist()))[:99]
    expected = {key for key in truth if key[0] in set(first_sessions)}
    assert len(expected) == 387 and len(truth) == 10152
    for lists in peers.values():
        assert set(lists) == expected


@needs_data
@pytest.mark.parametrize("method, hr20, mrr20", [("vsknn", 0.610, 0.334), ("ar", 0.592, 0.316),
                                                 ("gru4rec", 0.571, 0.329), ("sr", 0.561, 0.328)])
def test_peers_figures_reproduced(test_truth, method, hr20, mrr20):
    _, truth = test_truth
    lists = read_peer_lists(YOOCHOOSE / "peers" / f"{method}.csv")
    m = score_lists(lists, {k: truth[k] for k in lists}, n=20)
    assert round(m["hr@20"], 3) == hr20
    assert round(m["mrr@20"], 3) == mrr20


# ---------------------------------------------------------------------------
# Replay on a tiny shop
# ---------------------------------------------------------------------------

def tiny_model() -> Model:
    """Items a..e; after a comes b, after b comes c (next lists); popularity e > d > ..."""
    n = 5
    nxt = np.full((n, 2), -1, dtype=np.int32)
    nxt_s = np.zeros((n, 2), dtype=np.float32)
    nxt[0], nxt_s[0] = [1, 3], [2.0, 1.0]
    nxt[1], nxt_s[1] = [2, 0], [3.0, 1.0]
    pad = np.full((n, 2), -1, dtype=np.int32)
    return Model(version="tiny", item_ids=np.array(list("abcde")),
                 item_factors=np.eye(n, 3, dtype=np.float32) + 0.1,
                 similar_items=pad, similar_scores=np.zeros((n, 2), np.float32),
                 cooc_items=pad, cooc_scores=np.zeros((n, 2), np.float32),
                 next_items=nxt, next_scores=nxt_s,
                 popularity=np.array([1, 2, 3, 4, 5], dtype=np.float32),
                 item_category=np.full(n, -1, dtype=np.int32), categories=np.array([], dtype=str),
                 meta={"params": {"regularization": 0.1}})


def columns_of(sessions: dict[str, list[str]], start_ms=0, user_of=None) -> EventColumns:
    """Click events, sessions one after another, 1 s apart."""
    items = sorted({i for seq in sessions.values() for i in seq})
    sids = list(sessions)
    users = sorted({(user_of or {}).get(s, s) for s in sids})
    rows = [(s, i) for s in sids for i in sessions[s]]
    n = len(rows)
    return EventColumns(
        user=np.array([users.index((user_of or {}).get(s, s)) for s, _ in rows]),
        session=np.array([sids.index(s) for s, _ in rows]),
        item=np.array([items.index(i) for _, i in rows]),
        type=np.full(n, EVENT_TYPE_CODES["click"], dtype=np.int8),
        ts_ms=start_ms + 1000 * np.arange(n), dwell_ms=np.full(n, -1, dtype=np.int32),
        user_ids=np.array(users), session_ids=np.array(sids), item_ids=np.array(items),
        item_category=np.full(len(items), -1, dtype=np.int32), categories=np.array([], dtype=str))


NEXT_ONLY = ScoringParams(n=2, blend=0.0, sources=SourceWeights(similar=0.0, next=1.0))


def test_replay_ranks_are_exact():
    cols = columns_of({"s1": ["a", "b", "c"], "s2": ["a", "d", "x"]})
    replay = replay_next_item(tiny_model(), cols, NEXT_ONLY, WEIGHTS)
    # s1: after a -> [b, d] (b rank 1); after b -> [c, a] (c rank 1).
    # s2: after a -> [b, d] (d rank 2); after d -> popular [e, c] (x unknown: miss).
    assert replay.keys == [("s1", 0), ("s1", 1), ("s2", 0), ("s2", 1)]
    assert replay.ranks.tolist() == [1, 1, 2, 0]
    assert replay.lists[3] == ["e", "c"]
    # c, d and x have no successors: popular; the last event of each session is scored too.
    assert replay.strategies == {"popular": 3, "similar": 3} and replay.events == 6
    m = replay.metrics(ks=(1, 2))
    assert m["hr@1"] == 0.5 and m["hr@2"] == 0.75 and m["mrr@2"] == round(2.5 / 4, 4)
    assert replay.metrics(ks=(1,), only={("s2", 0)})["hr@1"] == 0.0


def test_replay_gives_the_workers_lists():
    """Parity: the replay's lists are what the worker's per-event steps give."""
    model = tiny_model()
    params = ScoringParams(n=3, blend=0.3, exclude_query=False,
                           sources=SourceWeights(similar=0.0, next=1.0, session=1.0,
                                                 session_decay=0.5, next_decay=0.5))
    sessions = {"s1": ["a", "b", "a", "c"], "s2": ["b", "b", "e"]}
    replay = replay_next_item(model, columns_of(sessions), params, WEIGHTS)
    expected = []
    for seq in sessions.values():
        history, session = History(), Session()
        for ts, item in enumerate(seq):
            history = add_to_history(history, item, WEIGHTS.confidence(WEIGHTS.click), ts,
                                     history_max=params.history_max)
            session = add_to_session(session, item, max_len=params.session_max)
            if ts < len(seq) - 1:
                expected.append(score_event(model, history, session, item, params).item_ids(model))
    assert replay.lists == expected


def test_replay_follows_users_across_sessions_in_time_order():
    model = tiny_model()
    params = replace_params(NEXT_ONLY, blend=0.5, filter_bought=True)
    cols = columns_of({"s1": ["a", "b"], "s2": ["a", "c"]}, user_of={"s1": "u", "s2": "u"})
    cols.type[1] = EVENT_TYPE_CODES["buy"]  # u buys b in s1
    replay = replay_next_item(model, cols, params, WEIGHTS)
    # In s2, after a, b is bought: the list is d then popular.
    assert "b" not in replay.lists[1]


def replace_params(params, **changes):
    from dataclasses import replace
    return replace(params, **changes)


def test_lists_file_round_trips(tmp_path):
    cols = columns_of({"s1": ["a", "b", "c"]})
    replay = replay_next_item(tiny_model(), cols, NEXT_ONLY, WEIGHTS)
    write_lists(tmp_path / "ours.csv", replay)
    lists = read_peer_lists(tmp_path / "ours.csv")
    assert lists == {("s1", 0): ["b", "d"], ("s1", 1): ["c", "a"]}
    truth = next_item_truth(cols)
    assert score_lists(lists, truth)["hr@20"] == 1.0


def test_original_protocol_map():
    model = tiny_model()
    # u1: query a, truth {b, c}; u2: query b, truth {c}; u3 has one event: no truth, skipped.
    cols = columns_of({"u1": ["a", "b", "c"], "u2": ["b", "c"], "u3": ["d"]})
    params = ScoringParams(n=3, blend=0.0, sources=SourceWeights(similar=0.0, next=1.0))
    out = evaluate_original(model, None, cols, WEIGHTS, params, k=3)
    assert out["users"] == 2
    # tuned (next lists): u1 -> [b, d, e]: AP = 1/2; u2 -> [c, a, e]: AP = 1.
    assert out["methods"]["tuned"]["map@3"] == 0.75
    # popularity: [e, d, c] (query left out): u1 AP = (1/3) / 2, u2 AP = 1/3.
    assert out["methods"]["popularity"]["map@3"] == round((1 / 6 + 1 / 3) / 2, 4)
    assert set(out["methods"]) == {"similar", "user_items", "ensemble", "personalized_similar",
                                   "tuned", "popularity"}


def test_report_files(tmp_path):
    report = {"generated_at": "now", "data": {"train": "a", "test": "b"},
              "model": {"version": "v", "n_items": 5, "params": {}},
              "scoring_params": ScoringParams().as_dict(),
              "next_item": {"all": metrics_from_ranks(np.array([1, 0])), "coverage": 0.5,
                            "strategies": {"similar": 2}, "seconds": 0.1, "events": 3,
                            "peers": {"vsknn": metrics_from_ranks(np.array([2, 0]))},
                            "peer_positions": metrics_from_ranks(np.array([1]))},
              "original": {"users": 2, "k": 3, "methods": {"similar": {"map@3": 0.1, "coverage": 0.2}}}}
    write_report(tmp_path / "r", report)
    assert json.loads((tmp_path / "r" / "report.json").read_text())["next_item"]["coverage"] == 0.5
    text = (tmp_path / "r" / "report.md").read_text()
    assert "vsknn (peer)" in text and "MAP@3" in text
    assert params_from_json(report["scoring_params"]) == ScoringParams()


def _write_sessions(path, sessions, t0):
    lines = ["SessionId\tItemId\tTime"]
    t = t0
    for sid, seq in sessions.items():
        for item in seq:
            lines.append(f"{sid}\t{item}\t{t:.3f}")
            t += 10
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("published", [True, False])
def test_the_report_shows_published_figures_found_beside_the_peers(tmp_path, published):
    rng = np.random.default_rng(0)
    _write_sessions(tmp_path / "train.txt",
                    {str(s): [str(100 + x) for x in rng.integers(0, 12, 4)] for s in range(60)},
                    1.4e9)
    _write_sessions(tmp_path / "test.txt",
                    {str(s): [str(100 + x) for x in rng.integers(0, 12, 3)] for s in range(60, 70)},
                    1.5e9)
    (tmp_path / "peers").mkdir()
    figures = {"peer": {"hr@20": 0.5, "mrr@20": 0.25}}
    if published:
        (tmp_path / "published.json").write_text(json.dumps(
            {"source": "a test", "positions": 20, "methods": figures}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--train", str(tmp_path / "train.txt"), "--test",
                              str(tmp_path / "test.txt"), "--report", str(tmp_path / "rep"),
                              "--peers", str(tmp_path / "peers"), "--protocol", "next-item"])
    assert run(args, load_settings({"RECSYS_ALS_FACTORS": "4", "RECSYS_ALS_ITERATIONS": "2"})) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    if published:
        assert report["next_item"]["published_all_positions"] == figures
    else:
        assert "published_all_positions" not in report["next_item"]


def test_command_line_end_to_end(tmp_path):
    def write(name, sessions, t0):
        _write_sessions(tmp_path / name, sessions, t0)
    rng = np.random.default_rng(0)
    train = {str(s): [str(100 + x) for x in rng.integers(0, 12, 4)] for s in range(60)}
    test = {str(s): [str(100 + x) for x in rng.integers(0, 12, 3)] for s in range(60, 70)}
    write("train.txt", train, 1.4e9)
    write("test.txt", test, 1.5e9)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--train", str(tmp_path / "train.txt"), "--test",
                              str(tmp_path / "test.txt"), "--report", str(tmp_path / "rep"),
                              "--lists", str(tmp_path / "lists.csv")])
    from shared.config import load_settings
    assert run(args, load_settings({"RECSYS_ALS_FACTORS": "4", "RECSYS_ALS_ITERATIONS": "2"})) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["next_item"]["all"]["positions"] == 20
    assert len(read_peer_lists(tmp_path / "lists.csv")) == 20
    assert "original" in report


# ---------------------------------------------------------------------------
# The target on the real data (fit on train_full, replay of test: ~10 s)
# ---------------------------------------------------------------------------

@needs_data
def test_yoochoose_beats_vsknn_with_the_chosen_parameters(test_truth):
    """The parameters chosen on train_tr -> train_valid clear V-SkNN on test."""
    from batch.evaluate import fit, load_profile
    tuned = load_profile("yoochoose-tuned")
    columns, truth = test_truth
    train, _ = read_events(YOOCHOOSE / "train_full.txt")
    model = fit(train, tuned.training)
    replay = replay_next_item(model, columns, tuned.scoring, tuned.training.weights)
    assert len(replay.keys) == 10152
    every = replay.metrics()
    assert every["hr@20"] >= 0.688 and every["mrr@20"] >= 0.367
    peer_keys = set(read_peer_lists(YOOCHOOSE / "peers" / "vsknn.csv"))
    on_peers = replay.metrics(only=peer_keys)
    assert on_peers["positions"] == 387
    assert on_peers["hr@20"] >= 0.610 and on_peers["mrr@20"] >= 0.334
