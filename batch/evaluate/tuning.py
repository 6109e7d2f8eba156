"""Tuning on a training part and a later validation part (never the test set).

:func:`tune` (coordinate descent over the scoring grid :data:`TUNE_GRID`),
:func:`tune_training` (over the training grid :data:`TRAIN_GRID`, a refit per
value), their :func:`objective`, the starting point (:func:`tune_start`),
:func:`ablations`, and the fit itself (:func:`fit`, a
:class:`~batch.training.TrainingParams`'s model).
"""
from __future__ import annotations

import json
from dataclasses import replace

from batch.columns import EventColumns
from batch.evaluate.replay import replay_next_item
from batch.retrain import train_model
from batch.training import TrainingParams
from shared.config import load_settings
from shared.model import Model
from shared.scoring import ScoringParams, SourceWeights
from shared.signals import SignalWeights


def objective(metrics: dict) -> float:
    """What tuning maximises: HR@20 + MRR@20 of the next-item replay."""
    return metrics["hr@20"] + metrics["mrr@20"]


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
                log(_trial_line(metrics, _changed(params)))
        return seen[key]

    seen: dict[str, tuple[float, dict]] = {}
    trail: list = []
    best = start
    best_value, _ = score(best)
    for _ in range(rounds):
        improved = False
        for name, values in grid.items():
            for value in values:
                try:
                    candidate = with_value(best, name, value)
                except ValueError:  # e.g. the last source switched off: not a configuration
                    continue
                value_score, _ = score(candidate)
                if value_score > best_value + 1e-9:
                    best, best_value, improved = candidate, value_score, True
        if not improved:
            break
    return best, trail


#: Training parameters :func:`tune_training` tries (each needs a refit); names are
#: among :data:`TrainingParams.REPORTED <batch.training.TrainingParams.REPORTED>`.
TRAIN_GRID: dict[str, tuple] = {
    "alpha": (15.0, 40.0, 80.0, 150.0, 300.0),
    "factors": (32, 64, 128),
    "regularization": (0.01, 0.1, 1.0),
}


def fit(columns: EventColumns, training: TrainingParams, *, source: dict | None = None) -> Model:
    """:func:`batch.retrain.train_model` with ``training``, quietly."""
    return train_model(columns, params=training, source=source, progress=False)


def tune_training(columns: EventColumns, valid: EventColumns, params: ScoringParams,
                  training: TrainingParams, *, grid: dict[str, tuple] = TRAIN_GRID,
                  log=None) -> tuple[TrainingParams, Model, list]:
    """One coordinate-descent pass over training parameters, each value a refit on ``columns``.

    The replay of ``valid`` uses the candidate's signal weights (its alpha) for
    the shoppers' confidence, as the worker would with those settings. Returns
    the best training parameters, their model and the trail.
    """
    trail = []
    cache: dict[str, tuple[float, Model]] = {}

    def score(candidate: TrainingParams) -> tuple[float, Model]:
        key = json.dumps(candidate.reported(), sort_keys=True)
        if key not in cache:
            model = fit(columns, candidate)
            metrics = replay_next_item(model, valid, params, candidate.weights).metrics()
            cache[key] = (objective(metrics), model)
            trail.append({"training": candidate.reported(), "metrics": metrics})
            if log:
                log(_trial_line(metrics, f"training {candidate.reported()}"))
        return cache[key]

    best = training
    best_value, best_model = score(best)
    for name, values in grid.items():
        for value in values:
            candidate = best.updated({name: value})
            value_score, model = score(candidate)
            if value_score > best_value + 1e-9:
                best, best_value, best_model = candidate, value_score, model
    return best, best_model, trail


def _trial_line(metrics: dict, what: str) -> str:
    """The log line of one tuning trial: its objective, HR@20, MRR@20 and what it tried."""
    return (f"tune: {objective(metrics):.4f} hr@20 {metrics['hr@20']:.4f} "
            f"mrr@20 {metrics['mrr@20']:.4f} {what}")


def _changed(params: ScoringParams) -> str:
    s = params.sources
    return (f"sim {s.similar}/{s.similar_decay} cooc {s.cooc}/{s.cooc_decay} "
            f"next {s.next}/{s.next_decay} sess {s.session}/{s.session_decay} "
            f"win {s.window} blend {params.blend} norm {params.normalisation}")


def ablations(params: ScoringParams) -> dict[str, ScoringParams]:
    """The parameters evaluated (``configured``) with each part switched off, and each source alone.

    A source is switched off only when another one stays on: without any
    source there are no candidates, and the list would be the fall-backs alone.

    >>> sorted(ablations(ScoringParams()))  # doctest: +NORMALIZE_WHITESPACE
    ['configured', 'cooc alone', 'next alone', 'paper: similar + blend', 'session alone',
     'similar alone', 'without personal (blend 0)']
    """
    out = {"configured": params}
    active = [name for name in ("similar", "cooc", "next", "session")
              if getattr(params.sources, name) > 0]
    for name in active if len(active) > 1 else ():
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


def _settings_or_default(settings):
    if settings is None:
        settings = load_settings()
    return settings
