"""Parity: a running worker gives, event for event, the lists ``recsys evaluate`` scores.

The first test sessions of yoochoose-100k go twice through the system: as
event messages on Kafka to a real worker process (RocksDB tables, model from
the store), and in process through :func:`batch.evaluate.replay_next_item`.
Both use one model fit on ``train_full`` and one set of scoring parameters,
handed to the worker as its environment. The item lists must be equal, and
the scores equal to float32 precision; otherwise evaluation measures
something shoppers never see.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from worker_process import WorkerProcess

from batch.evaluate import fit, load_profile, replay_next_item
from batch.readers import REFERENCE_DATA_DIR, read_events
from batch.training import TrainingParams
from shared.config import Settings, load_settings
from shared.model_store import save_model
from shared.scoring import (History, ScoringParams, Session, add_to_history, add_to_session,
                            score_event)
from shared.scoring.example import _example_model
from shared.signals import SignalWeights
from shared.state import decode_user

YOOCHOOSE = REFERENCE_DATA_DIR / "yoochoose-100k"
#: Test sessions sent (from the start of test.txt).
SESSIONS = 40
#: What ``recsys evaluate --tune`` chose on yoochoose-100k.
TUNED = load_profile("yoochoose-tuned")
#: The chosen parameters, plus the two state rules they leave off: items
#: already shown are filtered (the ``shown`` list lives in the sessions
#: table) and a user's past confidence decays with event time.
PARAMS = replace(TUNED.scoring, filter_shown=True, decay_half_life_s=120.0)

needs_data = pytest.mark.skipif(not (YOOCHOOSE / "train_full.txt").is_file(),
                                reason="reference data not present")


def scoring_env(params: ScoringParams, alpha: float) -> dict[str, str]:
    """The worker's environment variables that make its settings give ``params`` and ``alpha``."""
    values = {"n_recommendations": params.n, "blend": params.blend,
              "normalisation": params.normalisation, "exclude_query": params.exclude_query,
              "exclude_session": params.exclude_session, "filter_bought": params.filter_bought,
              "filter_shown": params.filter_shown, "history_max": params.history_max,
              "decay_half_life_s": params.decay_half_life_s, "session_max": params.session_max,
              "alpha": alpha}
    values.update({f"source_{name}": value for name, value in params.sources.as_dict().items()})
    env_of = {f.name: f.metadata["env"] for f in dataclasses.fields(Settings)}
    return {env_of[name]: _env_text(value) for name, value in values.items()}


def _env_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def session_rec_sample(path: Path, out: Path, sessions: int) -> list[dict]:
    """Copy the first ``sessions`` sessions of a session-rec file to ``out``; their events.

    Each row becomes a ``click`` (what :mod:`batch.readers` makes of
    session-rec rows), the session id is user and session, ``ts`` is
    ``Time`` in epoch milliseconds, and the event id names session and
    position, so a resent event is recognised.
    """
    lines, events, seen, position = [], [], [], {}
    with open(path) as fh:
        header = fh.readline()
        for line in fh:
            sid, item, seconds = line.rstrip("\n").split("\t")
            if sid not in position:
                if len(seen) == sessions:
                    break
                seen.append(sid)
                position[sid] = 0
            lines.append(line)
            events.append({"event_id": f"yoochoose-test:{sid}:{position[sid]}", "user_id": sid,
                           "session_id": sid, "item_id": item, "type": "click",
                           "ts": int(round(float(seconds) * 1000))})
            position[sid] += 1
    out.write_text(header + "".join(lines))
    return events


def test_scoring_env_gives_the_workers_settings_these_params():
    env = scoring_env(PARAMS, alpha=TUNED.training.alpha)
    settings = load_settings(env)
    assert ScoringParams.from_settings(settings) == PARAMS
    assert settings.alpha == TUNED.training.alpha


def test_replay_scores_an_unknown_item_with_its_category_as_the_worker_does(tmp_path):
    """Regression: the replay scored items the model does not know without their
    category, so it fell back to the popular items overall where the worker,
    reading the event's category, gives the popular items of that category."""
    model = _example_model()  # categories a (i0, i1) and b (i2, i3)
    params = ScoringParams(n=3, blend=0.0)
    weights = SignalWeights.from_settings(load_settings({}))
    lines = [{"event_id": f"e{k}", "user_id": "u", "session_id": "s", "item_id": item,
              "type": "view", "ts": 1_700_000_000_000 + 1000 * k, "category": "b"}
             for k, item in enumerate(["new", "i2"])]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    replay = replay_next_item(model, read_events(tmp_path / "events.jsonl")[0], params, weights)
    history = add_to_history(History(), "new", weights.confidence(weights.view),
                             1_700_000_000_000, history_max=params.history_max)
    session = add_to_session(Session(), "new", max_len=params.session_max)
    worker = score_event(model, history, session, "new", params, query_category="b")
    assert worker.strategy == "popular_category+popular"
    assert replay.lists == [worker.item_ids(model)] == [["i3", "i2", "i0"]]


@needs_data
@pytest.mark.parametrize("filter_shown", [True, False], ids=["shown-filtered", "micro-batched"])
def test_worker_lists_equal_the_evaluation_replay(kafka_bootstrap, tmp_path, free_port,
                                                  filter_shown):
    """With ``filter_shown`` the worker scores event by event; without it, it scores
    micro-batches of the backlog sent here. Either way its lists are the replay's."""
    params = replace(PARAMS, filter_shown=filter_shown)
    env = scoring_env(params, alpha=TUNED.training.alpha)
    settings = load_settings(dict(os.environ, **env))  # what the worker will read
    events = session_rec_sample(YOOCHOOSE / "test.txt", tmp_path / "sample.txt", SESSIONS)
    train, _ = read_events(YOOCHOOSE / "train_full.txt")
    model = fit(train, TrainingParams.from_settings(settings).updated(TUNED.training.reported()))
    save_model(model, tmp_path / "models")

    worker = WorkerProcess(kafka_bootstrap, tmp_path, free_port(), env)
    try:
        worker.start()
        worker.send(*events)
        by_event = {r["event_id"]: r for r in worker.recommendations(len(events), timeout_s=90)}
        mean_batch = worker.get("/metrics.json")[1]["mean_batch"]
        worker.stop()
        rows = {user: decode_user(value) for user, value in worker.rows().items()}
    finally:
        worker.close()

    # The evaluation's replay of the same rows, read by its own reader.
    sample, _ = read_events(tmp_path / "sample.txt")
    weights = SignalWeights.from_settings(settings)
    replay = replay_next_item(model, sample, params, weights)
    assert filter_shown or mean_batch > 1  # the backlog was scored in micro-batches
    assert len(by_event) == len(events) and len(replay.keys) == len(events) - SESSIONS
    assert {r["model_version"] for r in by_event.values()} == {model.version}
    replayed, served, score_gaps = [], [], []
    for (sid, position), items, scores in zip(replay.keys, replay.lists, replay.scores):
        sid = str(sid)
        rec = by_event[f"yoochoose-test:{sid}:{position}"]
        replayed.append(((sid, position), items))
        served.append(((sid, position), [i["item_id"] for i in rec["items"]]))
        if replayed[-1] == served[-1]:
            score_gaps.append(max((abs(a - i["score"]) for a, i in
                                   zip(scores.tolist(), rec["items"])), default=0.0))
    differing = [(a, b) for a, b in zip(replayed, served) if a != b]
    assert not differing, (f"{len(differing)} of {len(replayed)} lists differ; first: "
                           f"replay {differing[0][0]} worker {differing[0][1]}")
    assert max(score_gaps) <= 1e-5
    # One event-to-state rule: the worker's rows are the replay's, for every user (event ids
    # and read positions aside: the replay's rows carry neither).
    assert set(rows) == set(replay.users) and len(rows) == SESSIONS
    for user, row in rows.items():
        assert (row.history, row.sessions) == (replay.users[user].history,
                                               replay.users[user].sessions), user
    # The sample reaches the state the worker keeps between events: without
    # the shown items (in the users row's sessions) or the decay (event times
    # in its history) the lists would be others.
    assert {r["strategy"] for r in by_event.values()} == set(replay.strategies)
    for changed in (replace(params, filter_shown=not filter_shown),
                    replace(params, decay_half_life_s=0.0)):
        assert replay_next_item(model, sample, changed, weights).lists != replay.lists
