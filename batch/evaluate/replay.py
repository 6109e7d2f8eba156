"""The next-item replay: test events through the worker's state updates and scoring.

:func:`replay_next_item` replays events in time order with the worker's
event-to-state rule (:func:`shared.state.apply_event`) and
:func:`~shared.scoring.score_event`, and ranks each position's next item
in its list; :class:`Replay` holds what it produced and :func:`write_lists`
writes its lists in the peers' format.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import KS, coverage, metrics_from_ranks, rank_of
from batch.evaluate.peers import session_order
from shared.model import Model
from shared.scoring import History, ScoringParams, add_shown, score_event
from shared.signals import SignalWeights
from shared.state import StateRule, UserState, apply_event, with_session


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
    users : dict of str to UserState
        Each user's row after the replay: what the worker's ``users`` table holds.
    """

    keys: list
    ranks: np.ndarray
    lists: list
    scores: list
    strategies: dict
    seconds: float
    events: int
    users: dict = field(default_factory=dict)

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

    Each event changes the user's row by the worker's own rule
    (:func:`shared.state.apply_event`, with :func:`state_rule`), then
    :func:`~shared.scoring.score_event` gives the list from the row's history
    and session; the target of position p is the session's item p + 1.

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
    rule = state_rule(weights, params)
    if only_sessions is not None:
        order = np.array([row for row in order.tolist()
                          if session_ids[columns.session[row]] in only_sessions], dtype=np.int64)
    no_vector = np.zeros(model.item_factors.shape[1], dtype=np.float32)
    users: dict[str, UserState] = {}
    keys, ranks, lists, scores = [], [], [], []
    strategies: dict[str, int] = {}
    started = time.perf_counter()
    rows = order.tolist()
    for row, event in zip(rows, columns.events(rows)):
        user = users.get(event.user_id)
        if user is None and start_histories and event.user_id in start_histories:
            user = UserState(history=start_histories[event.user_id])
        user = apply_event(event, user, rule)  # never None: every row has an id of its own
        session = user.session(event.session_id)
        fixed = None if user_factors is None else user_factors.get(event.user_id, no_vector)
        rec = score_event(model, user.history, session, event.item_id, params,
                          query_category=event.category, user_factors=fixed)
        rec_ids = rec.item_ids(model)
        if params.filter_shown:  # as the worker: the list's items join the session's shown
            session = add_shown(session, rec_ids, max_len=params.session_max)
            user = replace(user, sessions=with_session(user.sessions, event.session_id, session,
                                                       rule))
        users[event.user_id] = user
        strategies[rec.strategy] = strategies.get(rec.strategy, 0) + 1
        if next_row[row] >= 0:
            target = item_ids[columns.item[next_row[row]]]
            keys.append((event.session_id, int(position[row])))
            ranks.append(rank_of(target, rec_ids))
            lists.append(rec_ids)
            scores.append(rec.scores)
    return Replay(keys=keys, ranks=np.array(ranks, dtype=np.int64), lists=lists, scores=scores,
                  strategies=dict(sorted(strategies.items())),
                  seconds=time.perf_counter() - started, events=len(rows), users=users)


def state_rule(weights: SignalWeights, params: ScoringParams) -> StateRule:
    """The worker's event-to-state rule for ``weights`` and the state bounds in ``params``.

    The worker builds it from the same settings (:meth:`StateRule.from_settings`);
    the sessions kept per user and the dedup window stay at their defaults.
    """
    return StateRule(weights=weights, history_max=params.history_max,
                     decay_half_life_s=params.decay_half_life_s, session_max=params.session_max)


def write_lists(path: str | Path, replay: Replay) -> None:
    """The replay's lists in the peers' format ``SessionId;Position;Recommendations;Scores``."""
    with open(path, "w", newline="") as fh:
        fh.write("SessionId;Position;Recommendations;Scores\n")
        for (sid, pos), items, scores in zip(replay.keys, replay.lists, replay.scores):
            fh.write(f"{sid};{pos};{','.join(items)};"
                     f"{','.join(repr(float(s)) for s in np.asarray(scores))}\n")
