"""The next-item replay: test events through the worker's state updates and scoring.

:func:`replay_next_item` replays events in time order with
:func:`~shared.scoring.add_to_history`, :func:`~shared.scoring.add_to_session`
and :func:`~shared.scoring.score_event`, and ranks each position's next item
in its list; :class:`Replay` holds what it produced and :func:`write_lists`
writes its lists in the peers' format.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import KS, coverage, metrics_from_ranks, rank_of
from batch.evaluate.peers import session_order
from shared.events import EVENT_TYPE_CODES
from shared.model import Model
from shared.scoring import (History, ScoringParams, Session, add_shown, add_to_history,
                            add_to_session, score_event)
from shared.signals import SignalWeights


@dataclass
class Replay:
    """What a next-item replay produced.

    Attributes
    ----------
    keys : list of (session id, position)
    ranks : ndarray of int
        Rank of the target in the list, 0 when absent.
    lists : list of list of str
        The top-n item ids of each position.
    scores : list of ndarray
    strategies : dict
        How many lists each strategy produced.
    seconds : float
        Wall time of the replay.
    events : int
        Events replayed (positions plus each session's last event).
    """

    keys: list
    ranks: np.ndarray
    lists: list
    scores: list
    strategies: dict
    seconds: float
    events: int

    def metrics(self, ks=KS, only: set | None = None) -> dict[str, float]:
        """Metrics over all positions, or over the keys in ``only``."""
        if only is None:
            return metrics_from_ranks(self.ranks, ks)
        pick = np.array([key in only for key in self.keys], dtype=bool)
        return metrics_from_ranks(self.ranks[pick], ks)

    def coverage(self, n_items: int, only: set | None = None) -> float:
        lists = (self.lists if only is None else
                 [items for key, items in zip(self.keys, self.lists) if key in only])
        return coverage(lists, n_items)


def replay_next_item(model: Model, columns: EventColumns, params: ScoringParams,
                     weights: SignalWeights, *, only_sessions: set | None = None,
                     start_histories: dict[str, History] | None = None,
                     user_factors: dict[str, np.ndarray] | None = None) -> Replay:
    """Replay events in time order through the worker's state updates and score each list.

    Each event updates the user's :class:`~shared.scoring.History` and the
    session's :class:`~shared.scoring.Session` exactly as the worker does,
    then :func:`~shared.scoring.score_event` gives the list; the target of
    position p is the session's item p + 1.

    Parameters
    ----------
    model : Model
    columns : EventColumns
        The test events.
    params : ScoringParams
    weights : SignalWeights
        Event weights and alpha, for each event's confidence.
    only_sessions : set of str, optional
        Replay only these sessions (their users' other sessions are skipped too).
    start_histories : dict, optional
        User id -> the :class:`~shared.scoring.History` the user has before
        the first replayed event (the worker's table at that time); empty
        otherwise. Replayed events are added to it.
    user_factors : dict, optional
        User id -> a fixed user vector that every list of the user is scored
        with instead of the vector folded in from the updated history; users
        not in it get no personal score. Histories are still updated (the
        bought filter reads them).

    Returns
    -------
    Replay
    """
    order = session_order(columns)
    session_ids = columns.session_ids.astype(str)
    item_ids = columns.item_ids.astype(str)
    # Each session's rows in replay order, to know the targets.
    next_row = np.full(len(columns), -1, dtype=np.int64)
    position = np.zeros(len(columns), dtype=np.int64)
    last_of: dict[int, int] = {}
    count: dict[int, int] = {}
    for row in order.tolist():
        code = int(columns.session[row])
        if code in last_of:
            next_row[last_of[code]] = row
        last_of[code] = row
        position[row] = count.get(code, 0)
        count[code] = position[row] + 1
    type_weight = weights.by_type_code()
    buy = EVENT_TYPE_CODES["buy"]
    # The item's category, as the worker reads it from the event: it picks the
    # popular-in-category fall-back when the model does not know the item.
    category_names = np.asarray(columns.categories).astype(str)
    item_category = [str(category_names[c]) if 0 <= c < len(category_names) else None
                     for c in np.asarray(columns.item_category).tolist()]
    user_names = columns.user_ids.astype(str) if start_histories or user_factors is not None else None
    no_vector = np.zeros(model.item_factors.shape[1], dtype=np.float32)
    histories: dict[int, History] = {}
    sessions: dict[int, Session] = {}
    keys, ranks, lists, scores = [], [], [], []
    strategies: dict[str, int] = {}
    started = time.perf_counter()
    events = 0
    for row in order.tolist():
        sid = session_ids[columns.session[row]]
        if only_sessions is not None and sid not in only_sessions:
            continue
        events += 1
        user, session_code = int(columns.user[row]), int(columns.session[row])
        item = item_ids[columns.item[row]]
        type_code = int(columns.type[row])
        dwell = int(columns.dwell_ms[row])
        r = weights.preference_one(type_code, dwell if dwell >= 0 else None) \
            if 0 <= type_code < len(type_weight) else 0.0
        history = histories.get(user)
        if history is None:
            history = start_histories.get(user_names[user], History()) if start_histories \
                else History()
        if r > 0:
            history = add_to_history(history, item, weights.confidence(r), int(columns.ts_ms[row]),
                                     history_max=params.history_max,
                                     decay_half_life_s=params.decay_half_life_s,
                                     bought=type_code == buy)
            histories[user] = history
        session = add_to_session(sessions.get(session_code, Session()), item,
                                 max_len=params.session_max)
        fixed = None if user_factors is None else user_factors.get(user_names[user], no_vector)
        rec = score_event(model, history, session, item, params,
                          query_category=item_category[columns.item[row]], user_factors=fixed)
        rec_ids = rec.item_ids(model)
        if params.filter_shown:
            session = add_shown(session, rec_ids, max_len=params.session_max)
        sessions[session_code] = session
        strategies[rec.strategy] = strategies.get(rec.strategy, 0) + 1
        if next_row[row] >= 0:
            target = item_ids[columns.item[next_row[row]]]
            keys.append((sid, int(position[row])))
            ranks.append(rank_of(target, rec_ids))
            lists.append(rec_ids)
            scores.append(rec.scores)
    return Replay(keys=keys, ranks=np.array(ranks, dtype=np.int64), lists=lists, scores=scores,
                  strategies=dict(sorted(strategies.items())),
                  seconds=time.perf_counter() - started, events=events)


def write_lists(path: str | Path, replay: Replay) -> None:
    """The replay's lists in the peers' format ``SessionId;Position;Recommendations;Scores``."""
    with open(path, "w", newline="") as fh:
        fh.write("SessionId;Position;Recommendations;Scores\n")
        for (sid, pos), items, scores in zip(replay.keys, replay.lists, replay.scores):
            fh.write(f"{sid};{pos};{','.join(items)};"
                     f"{','.join(repr(float(s)) for s in np.asarray(scores))}\n")
