"""``recsys evaluate``: offline evaluation through the worker's own scoring path.

Every list scored here comes from :mod:`shared.scoring` after the state update
the stream worker makes (:func:`shared.state.apply_event`, then
:func:`~shared.scoring.score_event`); there is no second implementation of the
event-to-state rule, fold-in, candidates or filters.

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
What was chosen for a data set is kept as a settings profile,
``profiles/<name>.toml`` (:func:`load_profile`), and the figures peers
published for it as ``published.json`` beside its ``peers/`` folder
(:func:`published_figures`), which the report shows beside its own.

Modules
-------
:mod:`batch.evaluate.metrics`
    HR@k, MRR@k, NDCG@k, AP@k and coverage of ranked lists.
:mod:`batch.evaluate.peers`
    Sessions in replay order, the peers' list files and the next-item truth.
:mod:`batch.evaluate.replay`
    The next-item replay through the worker's state updates and scoring.
:mod:`batch.evaluate.synthetic`
    Real-time fold-in against stale user vectors on the synthetic shop.
:mod:`batch.evaluate.protocols`
    The original project's protocol.
:mod:`batch.evaluate.dataset_files`
    Published figures and tuned profiles, read from their files.
:mod:`batch.evaluate.tuning`
    Tuning of the scoring and training parameters
    (:class:`~batch.training.TrainingParams`), ablations and the fit.
:mod:`batch.evaluate.report`
    report.json, report.md and the plots.
:mod:`batch.evaluate.cli`
    :func:`add_arguments` and :func:`run`, what ``recsys evaluate`` calls.

Every name is importable from :mod:`batch.evaluate` itself.

Example
-------
>>> hits = metrics_from_ranks(np.array([1, 0, 3, 25]), ks=(1, 5, 20))
>>> hits["hr@5"], hits["mrr@5"], round(hits["ndcg@5"], 4)
(0.5, 0.3333, 0.375)
"""
from __future__ import annotations

import numpy as np  # noqa: F401  (the example above uses it)

from batch.evaluate.cli import add_arguments, chosen_by, main, params_from_json, run
from batch.evaluate.dataset_files import (PROFILES_DIR, PUBLISHED_FILE, Profile, Published,
                                          load_profile, published_figures)
from batch.evaluate.metrics import (DIGITS, KS, MAP_K, average_precision_at, coverage,
                                    metrics_from_ranks, rank_of)
from batch.evaluate.peers import (Positions, next_item_truth, read_peer_lists, read_peers,
                                  score_lists, session_order)
from batch.evaluate.protocols import evaluate_original, first_event_queries
from batch.evaluate.replay import Replay, replay_next_item, write_lists
from batch.evaluate.report import json_default, write_report
from batch.evaluate.synthetic import (GROUPS, SYNTHETIC_EVENTS, SYNTHETIC_SEED,
                                      SYNTHETIC_TRAIN_SHARE, batch_user_factors, preferred_share,
                                      realtime_markdown, realtime_vs_stale, shopper_groups,
                                      split_by_time, user_histories)
from batch.evaluate.tuning import (TRAIN_GRID, TUNE_GRID, TUNE_START_SOURCES, ablations, fit,
                                   objective, tune, tune_start, tune_training)

__all__ = [
    # metrics
    "KS", "MAP_K", "DIGITS", "rank_of", "metrics_from_ranks", "average_precision_at", "coverage",
    # peers
    "Positions", "session_order", "read_peer_lists", "read_peers", "score_lists",
    "next_item_truth",
    # replay
    "Replay", "replay_next_item", "write_lists",
    # synthetic
    "GROUPS", "SYNTHETIC_EVENTS", "SYNTHETIC_TRAIN_SHARE", "SYNTHETIC_SEED", "user_histories",
    "batch_user_factors", "split_by_time", "preferred_share", "shopper_groups",
    "realtime_vs_stale", "realtime_markdown",
    # protocols
    "first_event_queries", "evaluate_original",
    # dataset files
    "PROFILES_DIR", "PUBLISHED_FILE", "Profile", "Published", "load_profile", "published_figures",
    # tuning
    "objective", "TUNE_START_SOURCES", "tune_start", "TUNE_GRID", "tune", "TRAIN_GRID", "fit",
    "tune_training", "ablations",
    # report
    "write_report", "json_default",
    # command line
    "add_arguments", "params_from_json", "chosen_by", "run", "main",
]
