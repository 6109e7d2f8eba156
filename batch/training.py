"""Fitting ALS and the pieces a model version is assembled from.

:class:`TrainingParams` is everything a model depends on besides the events,
read from the settings or from a saved model's meta.json; :func:`fit_als` fits
``implicit``'s ALS on the confidence matrix; the helpers check the events, put
users and items in id order (so a model depends on the events alone, not on the
order a file or a topic's partitions gave them in), count what was used and
time each step. :class:`RetrainError` is raised when the input cannot make a
model.

ALS is ``implicit``'s: the matrix holds c_ui = 1 + alpha * r_ui and
``implicit``'s own ``alpha`` stays 1.0 (see :mod:`batch.matrix`);
``regularization`` is the λ of x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u as it stands,
not scaled by the number of a user's items (implicit 0.7's CPU and GPU
solvers add λ to the diagonal of YᵀY).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import implicit.cpu.als
import numpy as np
from threadpoolctl import threadpool_limits

from batch.columns import EventColumns
from batch.matrix import Interactions
from shared.signals import SignalWeights


class RetrainError(ValueError):
    """The input cannot make a model; the message says why. The store is left as it was."""


#: How meta.json states the use of ``alpha`` (see the module docstring).
CONFIDENCE = "c = 1 + alpha * r"


@dataclass(frozen=True)
class TrainingParams:
    """Everything :func:`batch.retrain.train_model` makes a model from besides the events.

    The same inputs and parameters give the same model, whatever
    ``num_threads`` is; meta.json therefore records every field but
    ``num_threads`` (:meth:`as_dict`), and :meth:`from_meta` reads them back.

    Attributes
    ----------
    weights : SignalWeights
        Event weights and alpha (c_ui = 1 + alpha * r_ui).
    factors, regularization, iterations : int, float, int
        ALS parameters (see :func:`fit_als`).
    similar_k : int
        Length of every neighbour list.
    use_gpu : bool
        Fit ALS on CUDA.
    sequence_window : int
        Steps within which an item counts as following another.
    popularity_half_life_s : float
        Recency weighting of popularity; 0 counts every event alike.
    random_state : int
        Seed of ALS's initial factors.
    num_threads : int
        ``implicit``'s threads; 0 = one per core.
    """

    weights: SignalWeights
    factors: int
    regularization: float
    iterations: int
    similar_k: int
    use_gpu: bool = False
    sequence_window: int = 5
    popularity_half_life_s: float = 0.0
    random_state: int = 0
    num_threads: int = 0

    #: The parameters a report's ``training`` holds and a ``--params`` file may set:
    #: the ones evaluation chooses; the rest come from the settings.
    REPORTED: ClassVar[tuple[str, ...]] = ("alpha", "factors", "regularization", "iterations",
                                           "similar_k")

    @property
    def alpha(self) -> float:
        """The confidence scale, ``weights.alpha``."""
        return self.weights.alpha

    @classmethod
    def from_settings(cls, settings) -> TrainingParams:
        """The parameters a :class:`shared.config.Settings` configures (the rest at their defaults)."""
        return cls(weights=SignalWeights.from_settings(settings), factors=settings.als_factors,
                   regularization=settings.als_regularization,
                   iterations=settings.als_iterations, similar_k=settings.similar_k,
                   use_gpu=settings.als_use_gpu)

    @classmethod
    def from_meta(cls, meta: dict) -> TrainingParams:
        """The parameters a saved model was trained with (its meta.json; ``num_threads`` 0).

        Raises
        ------
        ValueError
            When meta.json does not record one of them.
        """
        params = meta.get("params", {})
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("weights", "num_threads")]
        missing = [name for name in ["signal_weights", *names] if name not in params]
        if missing:
            raise ValueError(f"meta.json records no training parameter {', '.join(missing)}")
        return cls(weights=SignalWeights(**params["signal_weights"]),
                   **{name: params[name] for name in names})

    def as_dict(self) -> dict:
        """Plain values, for a model's meta.json (``params``); :meth:`from_meta` reads them back."""
        return {"factors": self.factors, "regularization": self.regularization,
                "iterations": self.iterations, "alpha": self.alpha,
                "signal_weights": self.weights.as_dict(), "confidence": CONFIDENCE,
                "similar_k": self.similar_k, "sequence_window": self.sequence_window,
                "popularity_half_life_s": self.popularity_half_life_s,
                "random_state": self.random_state, "use_gpu": self.use_gpu}

    def reported(self) -> dict:
        """The :data:`REPORTED` parameters by name, for an evaluation report's ``training``."""
        return {name: getattr(self, name) for name in self.REPORTED}

    def updated(self, values: dict) -> TrainingParams:
        """These parameters with those :data:`REPORTED` that ``values`` names replaced.

        Other keys are ignored, so a report's ``training`` or a ``--params``
        file can be given as it is; ``alpha`` becomes a float, as the signal
        weights hold it.
        """
        changes = {name: values[name] for name in self.REPORTED if name in values}
        if "alpha" in changes:
            changes["weights"] = dataclasses.replace(self.weights, alpha=float(changes.pop("alpha")))
        return dataclasses.replace(self, **changes)


def fit_als(user_items, *, factors: int, regularization: float, iterations: int,
            use_gpu: bool = False, random_state: int = 0, num_threads: int = 0,
            on_iteration=None):
    """Fit ``implicit`` ALS on a confidence matrix, BLAS held to one thread.

    Parameters
    ----------
    user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
        c_ui = 1 + alpha * r_ui on observed pairs.
    factors, regularization, iterations : int, float, int
    use_gpu : bool
        Fit on CUDA; :class:`RetrainError` when this ``implicit`` has no CUDA.
    random_state : int
        Seed of the initial factors: the same input and seed give the same factors.
    num_threads : int
        ``implicit``'s threads; 0 = one per core.
    on_iteration : callable, optional
        Called as ``on_iteration(iteration, seconds, loss)`` after each sweep.

    Returns
    -------
    implicit.cpu.als.AlternatingLeastSquares
        Fitted, with numpy ``user_factors`` and ``item_factors``.
    """
    with threadpool_limits(1, "blas"):
        if use_gpu:
            model = _gpu_als(factors, regularization, iterations, random_state)
        else:
            model = implicit.cpu.als.AlternatingLeastSquares(
                factors=factors, regularization=regularization, alpha=1.0,
                iterations=iterations, num_threads=num_threads, random_state=random_state)
        model.fit(user_items, show_progress=False, callback=on_iteration)
    return model.to_cpu() if use_gpu else model


@dataclass(frozen=True)
class _UsedEvents:
    """Session, item index and time of the events that went into the matrix."""

    session: np.ndarray
    item: np.ndarray
    ts_ms: np.ndarray

    @classmethod
    def of(cls, columns: EventColumns, interactions: Interactions) -> _UsedEvents:
        used = interactions.used
        if used.all():
            session, item, ts_ms = columns.session, columns.item, columns.ts_ms
        else:
            session, item, ts_ms = columns.session[used], columns.item[used], columns.ts_ms[used]
        return cls(session=session, item=interactions.item_index[item], ts_ms=ts_ms)

    def data_range(self, source: dict | None) -> dict:
        first, last = (int(self.ts_ms.min()), int(self.ts_ms.max())) if len(self.ts_ms) else (None, None)
        return {"min_ts_ms": first, "max_ts_ms": last, "min_ts": _iso(first),
                "max_ts": _iso(last), "source": dict(source or {})}


def _iso(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _counts(columns: EventColumns, interactions: Interactions, events: _UsedEvents) -> dict:
    return {"events_read": len(columns), "events_used": interactions.n_events,
            "users": len(interactions.users), "items": len(interactions.items),
            "nnz": int(interactions.user_items.nnz),
            "sessions": int(np.count_nonzero(np.bincount(events.session)))
            if len(events.session) else 0}


def _in_id_order(columns: EventColumns) -> EventColumns:
    """The same events with user and item codes given in id order.

    ALS starts from random factors drawn row by row, and confidences are summed
    in an order that follows the item codes, so a model depends on the codes;
    giving them in id order makes it depend only on the events, not on the
    order they were read in (a topic's partitions interleave users otherwise
    than a file does).
    """
    user_ids, user, _ = _recode(columns.user_ids, columns.user)
    item_ids, item, item_order = _recode(columns.item_ids, columns.item)
    return dataclasses.replace(columns, user=user, user_ids=user_ids, item=item,
                               item_ids=item_ids, item_category=columns.item_category[item_order])


def _recode(ids: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids sorted, codes into them, old code of each new code); unknown codes become -1."""
    order = np.argsort(ids, kind="stable")
    # Two spare slots hold -1: clipped codes -1 and len(ids) land on them.
    new_code = np.full(len(ids) + 2, -1, dtype=np.int64)
    new_code[order] = np.arange(len(ids))
    return ids[order], new_code[np.clip(codes, -1, len(ids))], order


def _check_columns(columns: EventColumns) -> None:
    lengths = {name: len(getattr(columns, name))
               for name in ("user", "session", "item", "type", "ts_ms", "dwell_ms")}
    if len(set(lengths.values())) > 1:
        raise RetrainError(f"event columns differ in length: {lengths}")
    if len(columns) == 0:
        raise RetrainError("no events to train on")


def _check_interactions(columns: EventColumns, interactions: Interactions) -> None:
    if interactions.n_events == 0:
        raise RetrainError(
            f"none of the {len(columns):,} events is usable: each has an unknown user, "
            f"session, item or type code, or a type whose weight is 0")
    n_items = len(interactions.items)
    if n_items < 2:
        raise RetrainError(f"only {n_items} item has usable events; a model needs at least 2")


def _gpu_als(factors: int, regularization: float, iterations: int, random_state: int):
    import implicit.gpu
    if not implicit.gpu.HAS_CUDA:
        raise RetrainError("use_gpu is set but this build of implicit has no CUDA support")
    import implicit.gpu.als
    return implicit.gpu.als.AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=1.0, iterations=iterations,
        random_state=random_state)


class _Steps:
    """Times the steps of a retrain and, when asked, reports them on stderr."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        if self.progress:
            print(f"retrain: {text}", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, name: str):
        self.say(f"{name} ...")
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)
        self.say(f"{name} done in {self.timings[name]:.1f} s")

    def iterations(self, total: int):
        """An ``on_iteration`` callback for :func:`fit_als` that reports each sweep."""
        def report(iteration: int, seconds: float, loss) -> None:
            self.say(f"als iteration {iteration + 1}/{total} ({seconds:.1f} s)")
        return report
