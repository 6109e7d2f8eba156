"""``recsys evaluate``: offline evaluation through the worker's own scoring path.

Every list scored here comes from :mod:`shared.scoring` with the state update
rules the stream worker uses (:func:`~shared.scoring.add_to_history`,
:func:`~shared.scoring.add_to_session`, :func:`~shared.scoring.score_event`);
there is no second implementation of fold-in, candidates or filters.

Two protocols
-------------
``original``
    The original project's: a time-based split; each test user's first event
    is the query, the rest of that user's items are the truth; MAP@3 for
    item-similar only, user-items (folded-in factors over the catalogue),
    their 0.5/0.5 ensemble, the personalized-similar blend, the tuned
    scoring parameters and popularity.
``next-item``
    session-rec's (see the data set's README): test events are replayed in
    time order through the worker's state updates; after each event the list
    of ``n`` is scored against the session's next item. HR@k, MRR@k, NDCG@k
    for k in 1, 5, 10, 20 and catalogue coverage, on all positions and on
    the positions the published peers were scored on (``peers/*.csv``),
    whose own lists are scored by the same code.

:func:`realtime_vs_stale` (``benchmarks/eval_synthetic.py``) replays a
synthetic shop with ground truth twice, with the user's vector folded in
after every event (the worker's path) and with each user's vector fixed at
training time, to show what real-time updating is worth.

Hyper-parameters are chosen with :func:`tune` on a training part and a later
validation part (never on the test set), and the report says which and how.

Example
-------
>>> hits = metrics_from_ranks(np.array([1, 0, 3, 25]), ks=(1, 5, 20))
>>> hits["hr@5"], hits["mrr@5"], round(hits["ndcg@5"], 4)
(0.5, 0.3333, 0.375)
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from batch.columns import EventColumns
from shared.events import EVENT_TYPE_CODES
from shared.model import Model
from shared.scoring import (History, Recommendation, ScoringParams, Session, SourceWeights,
                            add_shown, add_to_history, add_to_session, fold_in_user,
                            history_arrays, recommend, recommend_for_user, score_event)
from shared.signals import SignalWeights

#: List lengths the next-item metrics are reported at.
KS: tuple[int, ...] = (1, 5, 10, 20)
#: The original project's list length.
MAP_K = 3
#: Digits kept in reported metrics.
DIGITS = 4


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def rank_of(target, items) -> int:
    """1-based rank of ``target`` in ``items``; 0 when absent.

    Examples
    --------
    >>> rank_of("b", ["a", "b"]), rank_of("z", ["a", "b"])
    (2, 0)
    """
    for position, item in enumerate(items, 1):
        if item == target:
            return position
    return 0


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """HR@k, MRR@k and NDCG@k of one-target positions from the target's rank.

    A rank of 0 (not listed) or above k counts as a miss at k and stays in
    the denominator. With one relevant item NDCG@k = 1 / log2(rank + 1).

    Parameters
    ----------
    ranks : ndarray of int
        1-based rank of each position's target, 0 when absent.
    ks : iterable of int

    Returns
    -------
    dict
        ``hr@k``, ``mrr@k``, ``ndcg@k`` for each k, and ``positions``.

    Examples
    --------
    >>> m = metrics_from_ranks(np.array([2, 0]), ks=(1, 2))
    >>> m["hr@1"], m["hr@2"], m["mrr@2"], round(m["ndcg@2"], 4), m["positions"]
    (0.0, 0.5, 0.25, 0.3155, 2)
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {"positions": int(len(ranks))}
    count = max(len(ranks), 1)
    for k in ks:
        hit = (ranks > 0) & (ranks <= k)
        out[f"hr@{k}"] = round(float(hit.sum()) / count, DIGITS)
        out[f"mrr@{k}"] = round(float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).sum()) / count,
                                DIGITS)
        out[f"ndcg@{k}"] = round(float(np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0).sum()) / count,
                                 DIGITS)
    return out


def average_precision_at(recommended, truth, k: int = MAP_K) -> float:
    """AP@k: the mean of precision@i over the hits i <= k, divided by min(k, |truth|).

    Examples
    --------
    >>> round(average_precision_at(["a", "x", "b"], {"a", "b"}, 3), 4)
    0.8333
    >>> average_precision_at(["x"], {"a"}, 3), average_precision_at(["a"], set(), 3)
    (0.0, 0.0)
    """
    truth = set(truth)
    if not truth:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for i, item in enumerate(list(recommended)[:k], 1):
        if item in truth and item not in seen:
            hits += 1
            total += hits / i
        seen.add(item)
    return total / min(k, len(truth))


def coverage(lists, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue that appears in at least one list (top ``k`` of each).

    Examples
    --------
    >>> coverage([["a", "b"], ["b", "c"]], 4), coverage([["a", "b"], ["b", "c"]], 4, k=1)
    (0.75, 0.5)
    """
    seen = set()
    for items in lists:
        seen.update(items[:k] if k else items)
    return round(len(seen) / n_items, DIGITS) if n_items else 0.0


# ---------------------------------------------------------------------------
# Sessions and peers
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Positions:
    """Next-item positions: after item ``position`` of ``session``, the target is the next item.

    Attributes
    ----------
    session : list of str
    position : ndarray of int
    target : list of str
    """

    session: list
    position: np.ndarray
    target: list

    def keys(self) -> list[tuple[str, int]]:
        return list(zip(self.session, self.position.tolist()))


def session_order(columns: EventColumns) -> np.ndarray:
    """Event rows in replay order: by time, ties in file order."""
    return np.argsort(columns.ts_ms, kind="stable")


def read_peer_lists(path: str | Path) -> dict[tuple[str, int], list[str]]:
    """A peer's lists from ``SessionId;Position;Recommendations;Scores``.

    Returns
    -------
    dict
        (session id, position) -> recommended item ids, best first.
    """
    lists: dict[tuple[str, int], list[str]] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=";")
        header = next(reader)
        if header[:3] != ["SessionId", "Position", "Recommendations"]:
            raise ValueError(f"{path}: not a peer list file (header {header})")
        for row in reader:
            if not row:
                continue
            lists[(row[0], int(row[1]))] = [i for i in row[2].split(",") if i]
    return lists


def read_peers(peers_dir: str | Path | None) -> dict[str, dict[tuple[str, int], list[str]]]:
    """Every ``peers/*.csv``: method name -> its lists. Empty when there is no folder."""
    if peers_dir is None or not Path(peers_dir).is_dir():
        return {}
    return {path.stem: read_peer_lists(path) for path in sorted(Path(peers_dir).glob("*.csv"))}


def score_lists(lists: dict[tuple[str, int], list[str]], truth: dict[tuple[str, int], str],
                n: int = 20, ks=KS) -> dict[str, float]:
    """Next-item metrics of given lists (a peer's) against ``truth`` over truth's keys.

    A key without a list counts as a miss.
    """
    ranks = np.array([rank_of(target, lists.get(key, [])[:n]) for key, target in truth.items()],
                     dtype=np.int64)
    return metrics_from_ranks(ranks, ks)


def next_item_truth(columns: EventColumns) -> dict[tuple[str, int], str]:
    """(session id, position) -> the next item, for every position but each session's last."""
    order = session_order(columns)
    sessions: dict[int, list[int]] = {}
    for row in order.tolist():
        sessions.setdefault(int(columns.session[row]), []).append(row)
    truth = {}
    for code, rows in sessions.items():
        sid = str(columns.session_ids[code])
        for p in range(len(rows) - 1):
            truth[(sid, p)] = str(columns.item_ids[columns.item[rows[p + 1]]])
    return truth


# ---------------------------------------------------------------------------
# Next-item replay
# ---------------------------------------------------------------------------

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
        lists = self.lists if only is None else [l for k, l in zip(self.keys, self.lists) if k in only]
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


# ---------------------------------------------------------------------------
# Real-time fold-in against stale user vectors (synthetic shop)
# ---------------------------------------------------------------------------

#: Shopper groups of :func:`realtime_vs_stale`.
GROUPS = ("all", "returning", "anonymous_or_new")
#: Events, training share and seed of :func:`realtime_vs_stale` unless told otherwise.
SYNTHETIC_EVENTS = 300_000
SYNTHETIC_TRAIN_SHARE = 0.8
SYNTHETIC_SEED = 7


def _add_row(history: History, columns: EventColumns, row: int, weights: SignalWeights,
             params: ScoringParams) -> History:
    """``history`` with event ``row`` added by the worker's rule (unchanged when its weight is 0)."""
    type_code = int(columns.type[row])
    dwell = int(columns.dwell_ms[row])
    r = weights.preference_one(type_code, dwell if dwell >= 0 else None)
    if r <= 0:
        return history
    return add_to_history(history, str(columns.item_ids[columns.item[row]]), weights.confidence(r),
                          int(columns.ts_ms[row]), history_max=params.history_max,
                          decay_half_life_s=params.decay_half_life_s,
                          bought=type_code == EVENT_TYPE_CODES["buy"])


def user_histories(columns: EventColumns, weights: SignalWeights, params: ScoringParams,
                   users: set | None = None) -> dict[str, History]:
    """User id -> the History the worker holds after all of ``columns`` (only ``users`` if given)."""
    out: dict[str, History] = {}
    names = columns.user_ids.astype(str)
    for row in session_order(columns).tolist():
        uid = names[columns.user[row]]
        if users is None or uid in users:
            history = _add_row(out.get(uid, History()), columns, row, weights, params)
            if history.items:
                out[uid] = history
    return out


def batch_user_factors(model: Model, histories: dict[str, History]) -> dict[str, np.ndarray]:
    """User id -> the user's vector at training time: the ALS user step against the trained items.

    x_u = (YᵀC_uY + λI)⁻¹YᵀC_u p_u over the user's training history, the
    solve ALS's own user update makes with the final item factors. Users the
    model knows no item of get none.
    """
    out = {}
    gram = model.gram.astype(np.float32)  # the precision fold_in_user solves in
    for uid, history in histories.items():
        items, confidence = history_arrays(model, history)
        if len(items):
            out[uid] = fold_in_user(model.item_factors, items, confidence,
                                    regularization=model.regularization, gram=gram)
    return out


def split_by_time(columns: EventColumns, train_share: float) -> tuple[EventColumns, EventColumns]:
    """The events before and from the time that leaves ``train_share`` of them before it."""
    order = session_order(columns)
    cut = int(columns.ts_ms[order[min(int(len(order) * train_share), len(order) - 1)]])
    early = columns.ts_ms < cut

    def part(mask):
        return replace(columns, **{name: getattr(columns, name)[mask] for name in
                                   ("user", "session", "item", "type", "ts_ms", "dwell_ms")})
    return part(early), part(~early)


def _number(ids) -> np.ndarray:
    """The numbers of synthetic ids (``u12`` -> 12)."""
    return np.array([int(i[1:]) for i in ids], dtype=np.int64)


def preferred_share(replay: Replay, truth, k: int = 20) -> np.ndarray:
    """Per position: the share of the top-``k`` list in the shopper's preferred categories."""
    sessions = _number([sid for sid, _ in replay.keys])
    preferred = truth.session_categories[sessions]
    out = np.zeros(len(replay.keys))
    for i, items in enumerate(replay.lists):
        if items:
            categories = truth.item_category[_number(items[:k])]
            out[i] = np.isin(categories, preferred[i]).mean()
    return out


def shopper_groups(replay: Replay, truth, returning: set[str]) -> dict[str, np.ndarray]:
    """Masks over the replay's positions: all, logged-in users with training history, the rest."""
    users = truth.session_user[_number([sid for sid, _ in replay.keys])]
    back = np.array([u >= 0 and f"u{u}" in returning for u in users.tolist()], dtype=bool)
    return {"all": np.ones(len(users), dtype=bool), "returning": back, "anonymous_or_new": ~back}


def _variant_metrics(replay: Replay, share: np.ndarray, mask: np.ndarray, k: int = 20) -> dict:
    m = metrics_from_ranks(replay.ranks[mask], ks=(k,))
    return {"positions": m["positions"], f"hr@{k}": m[f"hr@{k}"], f"mrr@{k}": m[f"mrr@{k}"],
            f"preferred@{k}": round(float(share[mask].mean()) if mask.any() else 0.0, DIGITS)}


def realtime_vs_stale(n_events: int = SYNTHETIC_EVENTS, *, seed: int = SYNTHETIC_SEED,
                      train_share: float = SYNTHETIC_TRAIN_SHARE, shop=None,
                      params: ScoringParams | None = None, training: dict | None = None,
                      settings=None, log=None) -> dict:
    """What per-event fold-in is worth against batch-only user vectors, on the synthetic shop.

    A synthetic shop (:func:`batch.synthetic.generate_columns`) is split by
    time; ALS is fit on the first ``train_share`` of the events
    (:func:`fit`, i.e. :func:`batch.retrain.train_model`), and the rest is
    replayed with :func:`replay_next_item` twice, from the histories the
    worker holds at the split (:func:`user_histories`):

    ``realtime``
        the worker's path: the user's vector folded in from the history
        updated by every event;
    ``stale``
        each user's vector fixed at training time (:func:`batch_user_factors`)
        for the whole test period; users without training history have none.

    Everything else (candidates, blend, filters, session state) is the same.
    Metrics per variant and shopper group (:data:`GROUPS`): next-item HR@20,
    MRR@20 and ``preferred@20``, the share of listed items in the shopper's
    preferred categories (from the ground truth).

    Returns
    -------
    dict
        ``params`` (shop, split, seed, sizes, scoring and training
        parameters), ``groups`` -> {``realtime``, ``stale``, ``difference``},
        ``strategies`` and ``seconds`` per variant.
    """
    from batch.synthetic import ShopParams, generate_columns
    settings = _settings_or_default(settings)
    log = log or (lambda text: None)
    shop = shop or ShopParams()
    params = params or ScoringParams.from_settings(settings)
    training = dict(training or training_from_settings(settings))
    weights = replace(SignalWeights.from_settings(settings), alpha=float(training["alpha"]))
    started = time.perf_counter()
    columns, truth = generate_columns(n_events, seed=seed, params=shop)
    train, test = split_by_time(columns, train_share)
    log(f"realtime_vs_stale: {len(train)} training events, {len(test)} replayed")
    model = fit(train, settings, training)
    test_users = set(test.user_ids[np.unique(test.user)].astype(str).tolist())
    start = user_histories(train, weights, params, users=test_users)
    stale_factors = batch_user_factors(model, start)
    prepared_s = time.perf_counter() - started
    replays = {}
    for name, fixed in (("realtime", None), ("stale", stale_factors)):
        log(f"realtime_vs_stale: replaying the {name} variant")
        replays[name] = replay_next_item(model, test, params, weights, start_histories=start,
                                         user_factors=fixed)
    groups = shopper_groups(replays["realtime"], truth, set(stale_factors))
    shares = {name: preferred_share(r, truth) for name, r in replays.items()}
    out_groups = {}
    for group, mask in groups.items():
        row = {name: _variant_metrics(r, shares[name], mask) for name, r in replays.items()}
        row["difference"] = {key: round(row["realtime"][key] - row["stale"][key], DIGITS)
                             for key in row["realtime"] if key != "positions"}
        out_groups[group] = row
    return {
        "params": {"n_events": n_events, "seed": seed, "train_share": train_share,
                   "train_events": len(train), "test_events": len(test),
                   "returning_users": len(stale_factors),
                   "test_users_with_history": len(start), "model_items": model.n_items,
                   "shop": asdict(shop),
                   "scoring_params": params.as_dict(), "training": training},
        "groups": out_groups,
        "strategies": {name: r.strategies for name, r in replays.items()},
        "seconds": {"generate_fit_histories": round(prepared_s, 2),
                    **{name: round(r.seconds, 2) for name, r in replays.items()}},
    }


def realtime_markdown(result: dict) -> str:
    """A Markdown table of :func:`realtime_vs_stale`'s figures."""
    p = result["params"]
    rows = []
    for group, row in result["groups"].items():
        for name in ("realtime", "stale", "difference"):
            m = row[name]
            rows.append([group, name, row["realtime"]["positions"], m["hr@20"], m["mrr@20"],
                         m["preferred@20"]])
    return "\n".join([
        "## Real-time fold-in against stale batch user vectors (synthetic shop)", "",
        f"{p['n_events']:,} synthetic events (seed {p['seed']}); ALS fit on the first "
        f"{p['train_share']:.0%} ({p['train_events']:,} events), the remaining "
        f"{p['test_events']:,} replayed through the worker's scoring. `realtime` folds the "
        "user in after every event; `stale` keeps each user's vector from training time "
        f"({p['returning_users']:,} returning users; anonymous and new visitors have none). "
        "`preferred@20`: share of listed items in the shopper's preferred categories.", "",
        _table(rows, ["shoppers", "variant", "positions", "HR@20", "MRR@20", "preferred@20"]),
        ""])


# ---------------------------------------------------------------------------
# The original project's protocol
# ---------------------------------------------------------------------------

def first_event_queries(train: EventColumns | None, test: EventColumns,
                        weights: SignalWeights, params: ScoringParams):
    """Each test user's first event (the query), their history and their truth.

    The history is the user's training events plus the query event, through
    the worker's update rule; the truth is the user's other test items.

    Yields
    ------
    (user id, query item id, History, Session, truth set)
    """
    order = session_order(test)
    by_user: dict[str, list[int]] = {}
    for row in order.tolist():
        by_user.setdefault(str(test.user_ids[test.user[row]]), []).append(row)
    past: dict[str, list[int]] = {}
    if train is not None:
        wanted = set(by_user)
        for row in session_order(train).tolist():
            uid = str(train.user_ids[train.user[row]])
            if uid in wanted:
                past.setdefault(uid, []).append(row)

    for uid, rows in by_user.items():
        query = str(test.item_ids[test.item[rows[0]]])
        truth = {str(test.item_ids[test.item[r]]) for r in rows[1:]} - {query}
        if not truth:
            continue
        history = History()
        for row in past.get(uid, []):
            history = _add_row(history, train, row, weights, params)
        history = _add_row(history, test, rows[0], weights, params)
        session = Session(items=(query,))
        yield uid, query, history, session, truth


def evaluate_original(model: Model, train: EventColumns | None, test: EventColumns,
                      weights: SignalWeights, params: ScoringParams, k: int = MAP_K) -> dict:
    """MAP@k of the original project's methods; every list comes from :mod:`shared.scoring`.

    Methods: ``similar`` (ALS-similar items of the query), ``user_items``
    (x_u · y over the catalogue), ``ensemble`` (0.5 / 0.5 of both over the
    catalogue), ``personalized_similar`` (the paper: similar items re-ranked
    with the configured blend), ``tuned`` (the given scoring parameters) and
    ``popularity``. The query item itself is never recommended.
    """
    paper = SourceWeights()
    methods = ("similar", "user_items", "ensemble", "personalized_similar", "tuned", "popularity")
    ap = {m: [] for m in methods}
    lists = {m: [] for m in methods}
    tuned = replace(params, n=k, exclude_query=True)
    for uid, query, history, session, truth in first_event_queries(train, test, weights, params):
        q = model.item_index.get(query, -1)
        items, conf = history_arrays(model, history)
        recs: dict[str, Recommendation] = {
            "similar": recommend(model, q, n=k, blend=0.0, sources=paper),
            "user_items": recommend_for_user(model, items, conf, n=k, exclude=[q]),
            "ensemble": recommend_for_user(model, items, conf, n=k, exclude=[q], similar_to=q,
                                           blend=0.5),
            "personalized_similar": recommend(model, q, items, conf, n=k,
                                              blend=params.blend if params.blend > 0 else 0.5,
                                              sources=paper),
            "tuned": score_event(model, history, session, query, tuned),
            "popularity": recommend(model, -1, n=k, exclude_query=True),
        }
        for name, rec in recs.items():
            ids = rec.item_ids(model)
            ap[name].append(average_precision_at(ids, truth, k))
            lists[name].append(ids)
    out = {"users": len(ap["similar"]), "k": k, "methods": {}}
    for name in methods:
        out["methods"][name] = {
            f"map@{k}": round(float(np.mean(ap[name])) if ap[name] else 0.0, DIGITS),
            "coverage": coverage(lists[name], model.n_items)}
    return out


# ---------------------------------------------------------------------------
# Tuning (on a training part and a later validation part only)
# ---------------------------------------------------------------------------

def objective(metrics: dict) -> float:
    """What tuning maximises: HR@20 + MRR@20 of the next-item replay."""
    return metrics["hr@20"] + metrics["mrr@20"]


#: The data set README's figures for all 10,152 test positions of
#: yoochoose-100k (session-rec's own code, fit on train_full): HR@20, MRR@20.
YOOCHOOSE_PUBLISHED_ALL: dict[str, tuple[float, float]] = {
    "vsknn": (0.688, 0.367), "ar": (0.634, 0.326), "sr": (0.619, 0.352),
    "item-kNN": (0.399, 0.180), "session popularity": (0.381, 0.264), "most popular": (0.089, 0.026),
}

#: What ``recsys evaluate --tune`` chose on yoochoose-100k (fit on train_tr,
#: replay of train_valid; see :func:`tune`): the scoring parameters ...
YOOCHOOSE_PARAMS = ScoringParams(
    n=20, blend=0.1, normalisation="minmax", exclude_query=False,
    sources=SourceWeights(similar=0.25, cooc=0.25, next=0.5, session=6.0, similar_decay=0.0,
                          cooc_decay=0.6, next_decay=0.0, session_decay=0.35, window=20, pool=200))
#: ... and the training parameters.
YOOCHOOSE_TRAINING = {"alpha": 150.0, "factors": 32, "regularization": 0.1, "iterations": 15,
                      "similar_k": 100}

#: Where tuning starts unless ``--params`` says otherwise: every source on, the
#: query item kept in the list (the next-item protocol's peers keep it: a
#: quarter of next clicks are the same item again).
TUNE_START_SOURCES = SourceWeights(similar=0.25, cooc=1.0, next=1.0, session=3.0, cooc_decay=0.8,
                                   next_decay=0.5, session_decay=0.5)


def tune_start(settings) -> ScoringParams:
    """The configured scoring parameters with :data:`TUNE_START_SOURCES`, blend 0.1, query kept."""
    return replace(ScoringParams.from_settings(settings), sources=TUNE_START_SOURCES, blend=0.1,
                   exclude_query=False)


#: Coordinate-descent grid of :func:`tune` over the scoring parameters.
TUNE_GRID: dict[str, tuple] = {
    "session": (0.0, 1.0, 2.0, 3.0, 4.0, 6.0),
    "session_decay": (0.2, 0.35, 0.5, 0.7, 0.9),
    "next": (0.0, 0.5, 1.0, 1.5, 2.0),
    "next_decay": (0.0, 0.25, 0.5, 0.75),
    "cooc": (0.0, 0.25, 0.5, 1.0, 1.5),
    "cooc_decay": (0.4, 0.6, 0.8, 0.9, 1.0),
    "similar": (0.0, 0.1, 0.25, 0.5, 1.0),
    "similar_decay": (0.0, 0.5, 0.8),
    "window": (3, 5, 10, 20),
    "blend": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
}


def tune(model: Model, valid: EventColumns, start: ScoringParams, weights: SignalWeights, *,
         grid: dict[str, tuple] = TUNE_GRID, rounds: int = 2, log=None) -> tuple[ScoringParams, list]:
    """Coordinate descent over ``grid`` on a validation replay; returns the best and the trail.

    One parameter at a time takes each of its grid values while the others
    stay at their best so far; ``rounds`` passes over all parameters. Names
    are :class:`~shared.scoring.SourceWeights` fields or ``blend`` /
    ``normalisation``.
    """
    def with_value(params: ScoringParams, name: str, value) -> ScoringParams:
        if name in SourceWeights.__dataclass_fields__:
            return replace(params, sources=replace(params.sources, **{name: value}))
        return replace(params, **{name: value})

    def score(params: ScoringParams) -> tuple[float, dict]:
        key = json.dumps(params.as_dict(), sort_keys=True)
        if key not in seen:
            metrics = replay_next_item(model, valid, params, weights).metrics()
            seen[key] = (objective(metrics), metrics)
            trail.append({"params": params.as_dict(), "metrics": metrics})
            if log:
                log(f"tune: {objective(metrics):.4f} hr@20 {metrics['hr@20']:.4f} "
                    f"mrr@20 {metrics['mrr@20']:.4f} {_changed(params)}")
        return seen[key]

    seen: dict[str, tuple[float, dict]] = {}
    trail: list = []
    best = start
    best_value, _ = score(best)
    for _ in range(rounds):
        improved = False
        for name, values in grid.items():
            for value in values:
                candidate = with_value(best, name, value)
                value_score, _ = score(candidate)
                if value_score > best_value + 1e-9:
                    best, best_value, improved = candidate, value_score, True
        if not improved:
            break
    return best, trail


#: Training parameters :func:`tune_training` tries (each needs a refit).
TRAIN_GRID: dict[str, tuple] = {
    "alpha": (15.0, 40.0, 80.0, 150.0, 300.0),
    "factors": (32, 64, 128),
    "regularization": (0.01, 0.1, 1.0),
}
#: Training parameters that :func:`fit` takes from a ``training`` dict.
TRAINING_KEYS = ("alpha", "factors", "regularization", "iterations", "similar_k")


def training_from_settings(settings) -> dict:
    """The training parameters :func:`fit` uses, as configured."""
    return {"alpha": settings.alpha, "factors": settings.als_factors,
            "regularization": settings.als_regularization, "iterations": settings.als_iterations,
            "similar_k": settings.similar_k}


def fit(columns: EventColumns, settings, training: dict, *, source: dict | None = None) -> Model:
    """:func:`batch.retrain.train_model` with the configured parameters, ``training`` overriding."""
    from batch.retrain import params_from_settings, train_model
    kwargs = params_from_settings(settings)
    kwargs["weights"] = replace(kwargs["weights"], alpha=float(training.get("alpha", settings.alpha)))
    for key in ("factors", "regularization", "iterations", "similar_k"):
        if key in training:
            kwargs[key] = training[key]
    return train_model(columns, source=source, progress=False, **kwargs)


def tune_training(columns: EventColumns, valid: EventColumns, params: ScoringParams, settings,
                  training: dict, *, grid: dict[str, tuple] = TRAIN_GRID,
                  log=None) -> tuple[dict, Model, list]:
    """One coordinate-descent pass over training parameters, each value a refit on ``columns``.

    The replay of ``valid`` uses the same alpha for the shoppers' confidence
    as the fit, as the worker would. Returns the best training parameters,
    their model and the trail.
    """
    trail = []
    cache: dict[str, tuple[float, Model]] = {}

    def score(candidate: dict) -> tuple[float, Model]:
        key = json.dumps(candidate, sort_keys=True)
        if key not in cache:
            model = fit(columns, settings, candidate)
            weights = replace(SignalWeights.from_settings(settings), alpha=float(candidate["alpha"]))
            metrics = replay_next_item(model, valid, params, weights).metrics()
            cache[key] = (objective(metrics), model)
            trail.append({"training": dict(candidate), "metrics": metrics})
            if log:
                log(f"tune: {objective(metrics):.4f} hr@20 {metrics['hr@20']:.4f} "
                    f"mrr@20 {metrics['mrr@20']:.4f} training {candidate}")
        return cache[key]

    best = dict(training)
    best_value, best_model = score(best)
    for name, values in grid.items():
        for value in values:
            candidate = dict(best, **{name: value})
            value_score, model = score(candidate)
            if value_score > best_value + 1e-9:
                best, best_value, best_model = candidate, value_score, model
    return best, best_model, trail


def _changed(params: ScoringParams) -> str:
    s = params.sources
    return (f"sim {s.similar}/{s.similar_decay} cooc {s.cooc}/{s.cooc_decay} "
            f"next {s.next}/{s.next_decay} sess {s.session}/{s.session_decay} "
            f"win {s.window} blend {params.blend} norm {params.normalisation}")


def ablations(params: ScoringParams) -> dict[str, ScoringParams]:
    """The tuned parameters with each part switched off, and each source alone."""
    out = {"tuned": params}
    for name in ("similar", "cooc", "next", "session"):
        if getattr(params.sources, name) > 0:
            out[f"without {name}"] = replace(params, sources=replace(params.sources, **{name: 0.0}))
    if params.blend > 0:
        out["without personal (blend 0)"] = replace(params, blend=0.0)
    for name in ("similar", "cooc", "next", "session"):
        alone = {other: 0.0 for other in ("similar", "cooc", "next", "session")}
        alone[name] = max(getattr(params.sources, name), 1.0)
        out[f"{name} alone"] = replace(params, blend=0.0, sources=replace(params.sources, **alone))
    out["paper: similar + blend"] = replace(params, blend=0.5, sources=SourceWeights())
    if not params.exclude_query:
        out["query item left out"] = replace(params, exclude_query=True)
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def write_report(folder: str | Path, report: dict) -> Path:
    """report.json, report.md and the PNG plots into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    plots = _plots(folder, report)
    (folder / "report.md").write_text(_markdown(report, plots))
    return folder


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
                     + " |")
    return "\n".join(lines)


def _metric_rows(named: dict[str, dict], ks=KS) -> tuple[list[list], list[str]]:
    header = ["method", "positions"] + [f"{m}@{k}" for k in ks for m in ("HR", "MRR", "NDCG")]
    rows = []
    for name, m in named.items():
        rows.append([name, m["positions"]] + [m[f"{metric}@{k}"] for k in ks
                                              for metric in ("hr", "mrr", "ndcg")])
    return rows, header


def _markdown(report: dict, plots: list[str]) -> str:
    out = ["# Evaluation report", "",
           f"Generated {report['generated_at']} by `recsys evaluate`.", ""]
    model = report.get("model", {})
    out += ["## Data and model", "",
            f"- train: `{report['data'].get('train')}`",
            f"- test: `{report['data'].get('test')}`",
            f"- model version: `{model.get('version')}`; items {model.get('n_items')}; "
            f"training parameters: `{json.dumps(model.get('params', {}), default=str)}`", ""]
    out += ["## Scoring parameters", "", "```json",
            json.dumps(report["scoring_params"], indent=2), "```", "",
            "Training parameters: `" + json.dumps(report.get("training", {})) + "`", ""]
    if report.get("tuning"):
        t = report["tuning"]
        out += ["### How they were chosen", "", t["how"], "",
                "Starting point: `" + json.dumps(t["start"]) + "`", "",
                f"Trials: {t['trials']}.", "",
                f"Validation (fit on `{t['train']}`, replay of `{t['valid']}`), chosen parameters:",
                "", _table(*_metric_rows({"tuned (valid)": t["best_metrics"]})), ""]
        if t.get("ablations"):
            out += ["Ablations on validation:", "",
                    _table(*_metric_rows(t["ablations"])), ""]
    nxt = report.get("next_item")
    if nxt:
        out += ["## Next-item replay (session-rec protocol)", ""]
        rows = {"ours, all positions": nxt["all"]}
        if nxt.get("peer_positions"):
            rows["ours, peer positions"] = nxt["peer_positions"]
        for name, m in nxt.get("peers", {}).items():
            rows[f"{name} (peer), peer positions"] = m
        out += [_table(*_metric_rows(rows)), ""]
        if nxt.get("published_all_positions"):
            out += ["Published figures on all positions (the data set's README) against ours:", "",
                    _table([["ours", nxt["all"]["hr@20"], nxt["all"]["mrr@20"]]]
                           + [[name, m["hr@20"], m["mrr@20"]]
                              for name, m in nxt["published_all_positions"].items()],
                           ["method (all positions)", "HR@20", "MRR@20"]), ""]
        out += [
                f"Catalogue coverage of the top-{report['scoring_params']['n']} lists: "
                f"{nxt['coverage']:.3f} (all positions). Strategies used: "
                f"`{json.dumps(nxt['strategies'])}`. Replay: {nxt['events']} events in "
                f"{nxt['seconds']:.1f} s ({nxt['events'] / max(nxt['seconds'], 1e-9):,.0f} events/s "
                f"including state updates).", ""]
        if nxt.get("ablations"):
            out += ["Ablations on test (all positions; for the record, not for choosing):", "",
                    _table(*_metric_rows(nxt["ablations"])), ""]
    orig = report.get("original")
    if orig:
        out += [f"## Original project's protocol (MAP@{orig['k']}, {orig['users']} users)", "",
                _table([[name, m[f"map@{orig['k']}"], m["coverage"]]
                        for name, m in orig["methods"].items()],
                       ["method", f"MAP@{orig['k']}", "coverage"]), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def _plots(folder: Path, report: dict) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the tables carry the numbers
        return []
    made = []
    nxt = report.get("next_item")
    if nxt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, metric in zip(axes, ("hr", "mrr", "ndcg")):
            for label, m, style in (("ours, all", nxt["all"], "o-"),
                                    ("ours, peer positions", nxt.get("peer_positions"), "s-")):
                if m:
                    ax.plot(KS, [m[f"{metric}@{k}"] for k in KS], style, label=label)
            for name, m in nxt.get("peers", {}).items():
                ax.plot(KS, [m[f"{metric}@{k}"] for k in KS], "x--", alpha=0.7,
                        label=f"{name} (peer positions)")
            ax.set_xlabel("k")
            ax.set_title(f"{metric.upper()}@k")
            ax.set_xticks(KS)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "metrics_vs_k.png", dpi=110)
        plt.close(fig)
        made.append("metrics_vs_k.png")
        bars = dict(nxt.get("ablations") or {})
        if bars:
            fig, ax = plt.subplots(figsize=(11, 4.5))
            names = list(bars)
            x = np.arange(len(names))
            ax.bar(x - 0.2, [bars[n]["hr@20"] for n in names], 0.4, label="HR@20")
            ax.bar(x + 0.2, [bars[n]["mrr@20"] for n in names], 0.4, label="MRR@20")
            published = nxt.get("published_all_positions", {}).get("vsknn")
            if published:
                ax.axhline(published["hr@20"], color="C0", ls=":", label="vsknn HR@20 (published)")
                ax.axhline(published["mrr@20"], color="C1", ls=":", label="vsknn MRR@20 (published)")
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            ax.set_title("Strategies side by side (test, all positions)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(folder / "strategies.png", dpi=110)
            plt.close(fig)
            made.append("strategies.png")
    orig = report.get("original")
    if orig:
        fig, ax = plt.subplots(figsize=(8, 4))
        names = list(orig["methods"])
        ax.bar(names, [orig["methods"][n][f"map@{orig['k']}"] for n in names])
        ax.set_ylabel(f"MAP@{orig['k']}")
        ax.set_title("Original protocol: first event as query")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.tight_layout()
        fig.savefig(folder / "original_map.png", dpi=110)
        plt.close(fig)
        made.append("original_map.png")
    return made


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys evaluate``."""
    parser.add_argument("--train", required=True, help="events the model is fit on")
    parser.add_argument("--test", required=True, help="later events to evaluate on")
    parser.add_argument("--report", required=True, help="folder for report.md/json and plots")
    parser.add_argument("--format", default=None, help="input format (default: detected)")
    parser.add_argument("--model", default=None,
                        help="a stored model version to score with instead of fitting on --train")
    parser.add_argument("--peers", default=None,
                        help="folder of peers' lists (SessionId;Position;Recommendations;Scores)")
    parser.add_argument("--protocol", choices=("both", "next-item", "original"), default="both")
    parser.add_argument("--lists", default=None,
                        help="also write the replay's lists in the peers' format to this file")
    parser.add_argument("--tune", nargs=2, metavar=("TRAIN_PART", "VALID_PART"), default=None,
                        help="choose the scoring parameters on these files first (never the test)")
    parser.add_argument("--params", default=None,
                        help="JSON file of scoring parameters (a report.json's scoring_params; "
                             "its training parameters and tuning record are taken too)")
    parser.add_argument("--ablations", action="store_true",
                        help="also replay with each candidate source switched off / alone")


def _settings_or_default(settings):
    if settings is None:
        from shared.config import load_settings
        settings = load_settings()
    return settings


def params_from_json(value: dict) -> ScoringParams:
    """:class:`ScoringParams` from :meth:`ScoringParams.as_dict` output."""
    value = dict(value)
    value["sources"] = SourceWeights(**value.get("sources", {}))
    return ScoringParams(**value)


def chosen_by(loaded: dict, params: ScoringParams, training: dict) -> dict | None:
    """The ``tuning`` record of a loaded report.json when it chose exactly these parameters.

    A report made with ``--params`` from a tuned report then still says how
    its parameters were chosen (and on which validation figures).
    """
    tuning = loaded.get("tuning")
    if not isinstance(tuning, dict):
        return None
    if tuning.get("scoring_params") != params.as_dict() or tuning.get("training") != training:
        return None
    return tuning


def run(args, settings=None) -> int:
    """``recsys evaluate``: optionally tune on train/valid, fit, evaluate, write the report."""
    from batch.readers import read_events
    settings = _settings_or_default(settings)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    params = tune_start(settings) if args.tune else ScoringParams.from_settings(settings)
    training = training_from_settings(settings)
    chosen = None
    if args.params:
        loaded = json.loads(Path(args.params).read_text())
        params = params_from_json(loaded.get("scoring_params", loaded))
        training.update({k: v for k, v in loaded.get("training", {}).items() if k in TRAINING_KEYS})
        chosen = chosen_by(loaded, params, training)
    report: dict = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "data": {"train": str(args.train), "test": str(args.test)}}
    if args.params:
        report["params_file"] = str(args.params)
    if chosen and not args.tune:
        report["tuning"] = chosen
    if args.tune:
        report["tuning"] = _tune_on(args.tune, args.format, settings, params, training,
                                    ablate=args.ablations, log=log)
        params = params_from_json(report["tuning"]["scoring_params"])
        training = dict(report["tuning"]["training"])
    weights = replace(SignalWeights.from_settings(settings), alpha=float(training["alpha"]))
    report["scoring_params"] = params.as_dict()
    report["training"] = training
    train, _ = read_events(args.train, args.format)
    if args.model:
        from shared.model_store import load_model
        model = load_model(args.model)
    else:
        log(f"evaluate: fitting on {args.train}")
        model = fit(train, settings, training, source={"kind": "file", "path": str(args.train)})
    report["model"] = {"version": model.version, "n_items": model.n_items,
                       "params": model.meta.get("params", {}), "data": model.meta.get("data", {})}
    test, _ = read_events(args.test, args.format)
    if args.protocol in ("both", "next-item"):
        log(f"evaluate: next-item replay of {args.test}")
        replay = replay_next_item(model, test, params, weights)
        peers = read_peers(args.peers)
        peer_keys = set().union(*(set(lists) for lists in peers.values())) if peers else None
        nxt = {"all": replay.metrics(), "coverage": replay.coverage(model.n_items),
               "strategies": replay.strategies, "seconds": round(replay.seconds, 2),
               "events": replay.events}
        if peer_keys:
            truth = next_item_truth(test)
            nxt["peer_positions"] = replay.metrics(only=peer_keys)
            nxt["peer_coverage"] = replay.coverage(model.n_items, only=peer_keys)
            peer_truth = {key: truth[key] for key in truth if key in peer_keys}
            nxt["peers"] = {name: score_lists(lists, peer_truth, n=params.n)
                            for name, lists in peers.items()}
        if args.ablations:
            nxt["ablations"] = {name: replay_next_item(model, test, p, weights).metrics()
                                for name, p in ablations(params).items()}
        if args.peers and Path(args.peers).resolve().parent.name == "yoochoose-100k":
            nxt["published_all_positions"] = {
                name: {"hr@20": hr, "mrr@20": mrr} for name, (hr, mrr) in YOOCHOOSE_PUBLISHED_ALL.items()}
        report["next_item"] = nxt
        if args.lists:
            write_lists(args.lists, replay)
    if args.protocol in ("both", "original"):
        log("evaluate: original protocol")
        report["original"] = evaluate_original(model, train, test, weights, params)
    folder = write_report(args.report, report)
    log(f"evaluate: report in {folder}")
    return 0


def _tune_on(files, fmt, settings, params: ScoringParams, training: dict, *, ablate: bool,
             log) -> dict:
    """Scoring grid, then training grid, then the scoring grid once more; test never read."""
    from batch.readers import read_events
    train_file, valid_file = files
    log(f"evaluate: tuning on {train_file} -> {valid_file}")
    columns, _ = read_events(train_file, fmt)
    valid, _ = read_events(valid_file, fmt)
    start = params
    model = fit(columns, settings, training)
    weights = replace(SignalWeights.from_settings(settings), alpha=float(training["alpha"]))
    params, trail = tune(model, valid, params, weights, log=log)
    training, model, train_trail = tune_training(columns, valid, params, settings, training, log=log)
    weights = replace(weights, alpha=float(training["alpha"]))
    params, trail2 = tune(model, valid, params, weights, rounds=1, log=log)
    out = {
        "train": str(train_file), "valid": str(valid_file),
        "how": ("Coordinate descent, maximising HR@20 + MRR@20 of the next-item replay of the "
                "validation part with a model fit on the training part: two passes over the "
                "scoring grid (TUNE_GRID) from the starting point below, one pass over the "
                "training grid (TRAIN_GRID, a refit per value), one more pass over the scoring "
                "grid. The test set was not read."),
        "start": start.as_dict(), "grid": {k: list(v) for k, v in TUNE_GRID.items()},
        "training_grid": {k: list(v) for k, v in TRAIN_GRID.items()},
        "trials": len(trail) + len(train_trail) + len(trail2),
        "scoring_params": params.as_dict(), "training": training,
        "best_metrics": replay_next_item(model, valid, params, weights).metrics()}
    if ablate:
        out["ablations"] = {name: replay_next_item(model, valid, p, weights).metrics()
                            for name, p in ablations(params).items()}
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m batch.evaluate`` (the same as ``recsys evaluate``)."""
    parser = argparse.ArgumentParser(prog="recsys evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
