"""Real-time fold-in against stale batch user vectors, on the synthetic shop.

:func:`realtime_vs_stale` replays a synthetic shop with ground truth
(:mod:`batch.synthetic`) twice, with the user's vector folded in after every
event (the worker's path) and with each user's vector fixed at training time
(:func:`batch_user_factors`), and :func:`realtime_markdown` tables the
figures. Also here: the worker's history rule over event rows
(:func:`user_histories`) and the time split (:func:`split_by_time`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import DIGITS, metrics_from_ranks
from batch.evaluate.peers import session_order
from batch.evaluate.replay import Replay, replay_next_item, state_rule
from batch.evaluate.report import _table
from batch.evaluate.tuning import _settings_or_default, fit
from batch.synthetic import ShopParams, generate_columns
from batch.training import TrainingParams
from shared.model import Model
from shared.scoring import History, ScoringParams, fold_in_user, history_arrays
from shared.signals import SignalWeights
from shared.state import UserState, apply_event

#: Shopper groups of :func:`realtime_vs_stale`.
GROUPS = ("all", "returning", "anonymous_or_new")
#: Events, training share and seed of :func:`realtime_vs_stale` unless told otherwise.
SYNTHETIC_EVENTS = 300_000
SYNTHETIC_TRAIN_SHARE = 0.8
SYNTHETIC_SEED = 7


def user_histories(columns: EventColumns, weights: SignalWeights, params: ScoringParams,
                   users: set | None = None) -> dict[str, History]:
    """User id -> the History the worker holds after all of ``columns`` (only ``users`` if given).

    The events are applied by the worker's rule (:func:`shared.state.apply_event`);
    a user none of whose events carries weight has no history and is left out.
    """
    rule = state_rule(weights, params)
    rows = session_order(columns).tolist()
    if users is not None:
        names = columns.user_ids.astype(str)
        rows = [row for row in rows if names[columns.user[row]] in users]
    states: dict[str, UserState] = {}
    for event in columns.events(rows):
        states[event.user_id] = apply_event(event, states.get(event.user_id), rule)
    return {uid: state.history for uid, state in states.items() if state.history.items}


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
                      params: ScoringParams | None = None, training: TrainingParams | None = None,
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
    ``params`` and ``training`` default to the configured ones (``settings``);
    the shoppers' confidence uses ``training``'s signal weights, as the fit.
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
    settings = _settings_or_default(settings)
    log = log or (lambda text: None)
    shop = shop or ShopParams()
    params = params or ScoringParams.from_settings(settings)
    training = training or TrainingParams.from_settings(settings)
    weights = training.weights
    started = time.perf_counter()
    columns, truth = generate_columns(n_events, seed=seed, params=shop)
    train, test = split_by_time(columns, train_share)
    log(f"realtime_vs_stale: {len(train)} training events, {len(test)} replayed")
    model = fit(train, training)
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
                   "scoring_params": params.as_dict(), "training": training.reported()},
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
