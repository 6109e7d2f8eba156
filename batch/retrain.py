"""Train a model version from events and publish it to the model store.

Steps: the ``user_items`` confidence matrix (:mod:`batch.matrix`), implicit
ALS, each item's neighbours and the popularity (:mod:`batch.neighbours`), then
an atomic save (:mod:`shared.model_store`) and pruning of old versions.
:func:`retrain` takes events as :class:`~batch.columns.EventColumns` from any
source and records what the caller says about that source in meta.json.

ALS is ``implicit``'s: the matrix holds c_ui = 1 + alpha * r_ui and
``implicit``'s own ``alpha`` stays 1.0 (see :mod:`batch.matrix`);
``regularization`` is the λ of x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u as it stands,
not scaled by the number of a user's items (implicit 0.7's CPU and GPU
solvers add λ to the diagonal of YᵀY).
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import implicit
import implicit.cpu.als
import numpy as np
from threadpoolctl import threadpool_limits

from batch.columns import EventColumns
from batch.matrix import Interactions, build_interactions
from batch.neighbours import (cooccurrence_neighbours, popularity, sequence_neighbours,
                              similar_by_cosine)
from shared.model import Model
from shared.model_store import ModelError, new_version, prune, save_model
from shared.signals import SignalWeights

#: Steps of :func:`train_model`, in order; ``meta["timings_s"]`` has one entry each.
STEPS = ("matrix", "als", "similar", "cooccurrence", "sequence", "popularity")


class RetrainError(ValueError):
    """The input cannot make a model; the message says why. The store is left as it was."""


def params_from_settings(settings) -> dict:
    """Keyword arguments of :func:`train_model` taken from a :class:`shared.config.Settings`."""
    return {"weights": SignalWeights.from_settings(settings),
            "factors": settings.als_factors,
            "regularization": settings.als_regularization,
            "iterations": settings.als_iterations,
            "similar_k": settings.similar_k,
            "use_gpu": settings.als_use_gpu}


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


def train_model(columns: EventColumns, *, weights: SignalWeights, factors: int,
                regularization: float, iterations: int, similar_k: int, use_gpu: bool = False,
                sequence_window: int = 5, popularity_half_life_s: float = 0.0,
                random_state: int = 0, num_threads: int = 0, source: dict | None = None,
                progress: bool = True) -> Model:
    """Train a model from events: matrix, ALS, neighbours, popularity.

    Parameters
    ----------
    columns : EventColumns
    weights : SignalWeights
        Event weights and alpha.
    factors, regularization, iterations : int, float, int
        ALS parameters (see :func:`fit_als`).
    similar_k : int
        Length of every neighbour list.
    use_gpu : bool
    sequence_window : int
        Steps within which an item counts as following another.
    popularity_half_life_s : float
        Recency weighting of popularity; 0 counts every event alike.
    random_state, num_threads : int
    source : dict, optional
        Where the events came from (file, topic offsets, ...); kept in meta.
    progress : bool
        Report each step on stderr.

    Returns
    -------
    Model
        ``meta`` holds version, created_at, params, data, counts and timings_s.

    Raises
    ------
    RetrainError
        When the events cannot make a model (none, none usable, fewer than 2 items).
    """
    steps = _Steps(progress)
    _check_columns(columns)
    with steps.step("matrix"):
        interactions = build_interactions(columns, weights)
    _check_interactions(columns, interactions)
    with steps.step("als"):
        item_factors = fit_als(
            interactions.user_items, factors=factors, regularization=regularization,
            iterations=iterations, use_gpu=use_gpu, random_state=random_state,
            num_threads=num_threads, on_iteration=steps.iterations(iterations)).item_factors
    events = _UsedEvents.of(columns, interactions)
    n_items = len(interactions.items)
    with steps.step("similar"):
        similar = similar_by_cosine(item_factors, similar_k)
    with steps.step("cooccurrence"):
        cooc = cooccurrence_neighbours(events.session, events.item, n_items, similar_k)
    with steps.step("sequence"):
        follows = sequence_neighbours(events.session, events.item, events.ts_ms, n_items,
                                      similar_k, window=sequence_window)
    with steps.step("popularity"):
        popular = popularity(events.item, n_items, ts_ms=events.ts_ms,
                             half_life_s=popularity_half_life_s)
    now = datetime.now(timezone.utc)
    params = {"factors": factors, "regularization": regularization, "iterations": iterations,
              "alpha": weights.alpha, "signal_weights": weights.as_dict(),
              "confidence": "c = 1 + alpha * r", "similar_k": similar_k,
              "sequence_window": sequence_window,
              "popularity_half_life_s": popularity_half_life_s, "random_state": random_state,
              "use_gpu": use_gpu, "implicit_version": implicit.__version__}
    meta = {"version": new_version(now), "created_at": now.isoformat(timespec="seconds"),
            "params": params, "data": events.data_range(source),
            "counts": _counts(columns, interactions, events), "timings_s": steps.timings,
            "evaluation": {}}
    return Model(version=meta["version"], item_ids=columns.item_ids[interactions.items].astype(str),
                 item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
                 similar_items=similar[0], similar_scores=similar[1],
                 cooc_items=cooc[0], cooc_scores=cooc[1],
                 next_items=follows[0], next_scores=follows[1], popularity=popular,
                 item_category=columns.item_category[interactions.items].astype(np.int32),
                 categories=np.asarray(columns.categories).astype(str), meta=meta)


def retrain(columns: EventColumns, store_dir: str | Path, *, keep_versions: int = 3,
            source: dict | None = None, progress: bool = True, **train) -> tuple[Model, Path]:
    """Train, save as a new version, prune old versions.

    Parameters
    ----------
    columns : EventColumns
    store_dir : path
        The model store.
    keep_versions : int
        Versions kept after saving, the new one included.
    source : dict, optional
        Where the events came from; kept in meta.json.
    progress : bool
        Report steps and a summary on stderr.
    **train
        The other keyword arguments of :func:`train_model`.

    Returns
    -------
    (Model, Path)
        The model and its version directory.

    Raises
    ------
    RetrainError
        Before the store is touched, when the input cannot make a model.
    ModelError
        When the save fails; the store keeps the versions it had.
    """
    model = train_model(columns, source=source, progress=progress, **train)
    started = time.perf_counter()
    path = save_model(model, store_dir)
    save_s = time.perf_counter() - started
    pruned = prune(store_dir, keep_versions)
    if progress:
        print(summary(model, path, save_s=save_s, pruned=pruned), file=sys.stderr, flush=True)
    return model, path


def summary(model: Model, path: Path, *, save_s: float, pruned: list[str]) -> str:
    """A one-screen account of a finished retrain."""
    counts, timings = model.meta["counts"], model.meta["timings_s"]
    lines = [
        f"retrain: version {model.version}",
        f"  saved to      {path} ({save_s:.1f} s); pruned {len(pruned)} old version(s)",
        f"  events        {counts['events_read']:,} read, {counts['events_used']:,} used",
        f"  users         {counts['users']:,}",
        f"  items         {counts['items']:,}",
        f"  sessions      {counts['sessions']:,}",
        f"  nnz           {counts['nnz']:,}",
        "  time per step " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()),
        f"  total         {sum(timings.values()) + save_s:.1f} s",
    ]
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """Options of ``recsys retrain``."""
    parser.add_argument("--input", required=True, help="event log or data set to train on")
    parser.add_argument("--format", default=None,
                        help="input format (see batch.readers); default: detected from the file")
    parser.add_argument("--store", default=None,
                        help="model store directory (default: RECSYS_MODEL_DIR)")


def run(args, settings) -> int:
    """``recsys retrain``: read events, train, publish; 2 with the reason when that fails."""
    from batch.readers import BadRowError, FormatError, detect_format, read_events

    try:
        fmt = args.format or detect_format(args.input)
        columns, report = read_events(args.input, fmt)
        source = {"kind": "file", "path": str(Path(args.input).resolve()), "format": fmt,
                  "rows_read": report.rows_read, "rows_bad": dict(report.rows_bad)}
        retrain(columns, args.store or settings.model_dir, keep_versions=settings.keep_versions,
                source=source, **params_from_settings(settings))
    except (OSError, FormatError, BadRowError, RetrainError, ModelError) as exc:
        print(f"recsys retrain: {exc}", file=sys.stderr)
        return 2
    return 0


@dataclass(frozen=True)
class _UsedEvents:
    """Session, item index and time of the events that went into the matrix."""

    session: np.ndarray
    item: np.ndarray
    ts_ms: np.ndarray

    @classmethod
    def of(cls, columns: EventColumns, interactions: Interactions) -> "_UsedEvents":
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
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


def _counts(columns: EventColumns, interactions: Interactions, events: _UsedEvents) -> dict:
    return {"events_read": len(columns), "events_used": interactions.n_events,
            "users": len(interactions.users), "items": len(interactions.items),
            "nnz": int(interactions.user_items.nnz),
            "sessions": int(np.count_nonzero(np.bincount(events.session)))
            if len(events.session) else 0}


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
