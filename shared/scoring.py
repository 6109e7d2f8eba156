"""THE scoring path: fold-in, candidates, blend, filters and fall-backs.

The stream worker (micro-batches of events), batch evaluation (replay) and
the HTTP views call these functions and nothing else to turn a shopper's state
into a list, so that what evaluation measures is what shoppers get.

Per event the worker does (``params`` = :meth:`ScoringParams.from_settings`)::

    history = add_to_history(history, item_id, confidence, ts_ms,          # user table
                             history_max=params.history_max,
                             decay_half_life_s=params.decay_half_life_s, bought=is_buy)
    session = add_to_session(session, item_id, max_len=params.session_max)  # session table
    rec = score_event(model, history, session, item_id, params)
    if params.filter_shown:
        session = add_shown(session, rec.item_ids(model), max_len=params.session_max)

and ``batch.evaluate`` replays test events through exactly these calls. The
worker scores a micro-batch of events with one call of :func:`score_events`
(each event with the state after it); :func:`score_event` is that call on a
batch of one.

Scoring one event
-----------------
1. **Anchors**: the query item and the session's most recent known items (at
   most ``window``), newest last. An anchor ``k`` steps before the newest
   weighs ``decay ** k`` in a source (``decay = 0``: the query item alone).
2. **Candidates** come from four sources, each a weighted sum over anchors:
   ``similar`` (ALS cosine neighbours, the paper's candidates), ``cooc``
   (items seen in the same sessions: summed over the session's items this is
   a session-kNN vote), ``next`` (items that followed the anchor: sequential
   rules) and ``session`` (the anchors themselves, for shoppers who come back
   to an item).
3. **Filters** drop candidates already bought, already shown in this
   session, marked unavailable or unknown to the model, and (when asked) the
   query item and the session's items.
4. **Similarity** ``s_i``: each source's sums are divided by their largest
   value among the remaining candidates and the sources add up with their
   weights.
5. **Personal score** ``x_u · y_i`` for the ``pool`` most similar
   candidates (ties to the lower index), ``x_u`` folded in from the user's
   history (:func:`fold_in_user`; a short history solves the same equations
   through the Woodbury identity, see :func:`_fold_in_batch`).
6. **Blend** (Agarwal et al., arXiv:1806.11371): ``s`` and ``x_u · y`` are
   each normalised within the candidates (min-max to [0, 1], or by rank) and
   mixed as ``(1 - blend) * s + blend * personal``; the best ``n`` win, ties
   to the lower index.
7. **Fall-backs** fill what is left of ``n``: the most popular items of the
   query item's category, then the most popular overall. Their scores are
   negative, in list order, so they always rank below the candidates.

Scoring a batch
---------------
:func:`score_events` computes the lists of many events together: the
fold-ins as stacks of small systems, and candidates, filters, normalisation,
blend and the best ``n`` as flat arrays over the batch, one segment per list.
A list does not depend on the rest of its batch, bit for bit: every sum runs
over one list's own entries in a fixed order, each stacked system is solved on
its own, and the personal scores are one matrix-vector product per list. So
the worker's micro-batches give the lists that evaluation measures replaying
one event at a time.

``strategy`` names the path: ``personalized_similar`` and ``similar`` (the
query item is known), ``session_fold_in`` and ``session_similar`` (it is
not, the session's other items gave candidates; ``session_fold_in`` also when
only the folded-in vector could rank the popular items), ``popular_category``
and ``popular``. A list topped up by a fall-back says so: ``similar+popular``.

Items are model indices (rows of ``item_factors``); -1 or any value outside
``[0, n_items)`` is unknown. :func:`to_indices` maps external ids. What can
be computed once per model (popular lists, padded neighbour arrays, YᵀY and
the fold-in's W = YL⁻ᵀ, n_items × k floats) is cached per model object and
dropped with it. A scoring process should hold BLAS to one thread
(``threadpoolctl`` or ``OPENBLAS_NUM_THREADS=1``): the matrices are tiny and
thread hand-offs cost more than they save.
"""
from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dgesv as _gesv
from scipy.linalg.lapack import sposv as _sposv

from shared.config import ConfigError
from shared.model import Model

__all__ = [
    "Recommendation", "SourceWeights", "ScoringParams", "History", "Session",
    "fold_in_user", "add_to_history", "add_to_session", "add_shown", "to_indices",
    "history_arrays", "score_event", "score_events", "recommend", "recommend_for_user",
    "normalise", "blend_scores", "popular_items", "anchor_weights",
]

#: Names of the candidate sources, in the order :class:`SourceWeights` lists them.
SOURCES: tuple[str, ...] = ("similar", "cooc", "next", "session")
#: Normalisations :func:`normalise` knows.
NORMALISATIONS: tuple[str, ...] = ("minmax", "rank")
#: Popular items the ``session_fold_in`` path re-ranks when no neighbour gives candidates.
FOLD_IN_POOL = 1000


@dataclass(frozen=True, eq=False)
class Recommendation:
    """A ranked list: model item indices, their scores (best first) and the path used.

    Attributes
    ----------
    items : ndarray of int64, shape (m,), m <= n
    scores : ndarray of float32, shape (m,)
        In [0, 1] for candidates; negative for fall-back items.
    strategy : str
    """

    items: np.ndarray
    scores: np.ndarray
    strategy: str

    def item_ids(self, model: Model) -> list[str]:
        """The external ids of :attr:`items`."""
        return model.item_ids[self.items].tolist()


@dataclass(frozen=True)
class SourceWeights:
    """How much each candidate source counts, and how fast older anchors fade.

    Attributes
    ----------
    similar, cooc, next, session : float
        Weight of each source in the similarity (0 switches a source off).
    similar_decay, cooc_decay, next_decay, session_decay : float
        An anchor ``k`` steps before the newest weighs ``decay ** k``; 0 keeps
        only the newest anchor (the query item).
    window : int
        Most recent session items used as anchors.
    pool : int
        Candidates with the highest similarity that the personal score
        re-ranks; 0 re-ranks them all.

    The default is the paper's: ALS-similar items of the query item only.
    """

    similar: float = 1.0
    cooc: float = 0.0
    next: float = 0.0
    session: float = 0.0
    similar_decay: float = 0.0
    cooc_decay: float = 0.0
    next_decay: float = 0.0
    session_decay: float = 0.0
    window: int = 10
    pool: int = 200

    def __post_init__(self):
        for name in SOURCES:
            if getattr(self, name) < 0 or not 0 <= getattr(self, f"{name}_decay") <= 1:
                raise ValueError(f"{name}: weights must be >= 0 and decays in [0, 1]")
        if self.window < 1 or self.pool < 0:
            raise ValueError("window must be >= 1 and pool >= 0")
        if not any(getattr(self, name) > 0 for name in SOURCES):
            raise ValueError(f"at least one candidate source ({', '.join(SOURCES)}) "
                             f"needs a weight above 0")
        object.__setattr__(self, "active", tuple(
            (s, float(getattr(self, name)), float(getattr(self, f"{name}_decay")))
            for s, name in enumerate(SOURCES) if getattr(self, name) > 0))
        object.__setattr__(self, "decays", any(decay > 0 for _, _, decay in self.active))
        object.__setattr__(self, "active_weights", np.array([[w] for _, w, _ in self.active]))

    def as_dict(self) -> dict:
        """Plain values, for reports and meta.json."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---------------------------------------------------------------------------
# Fold-in
# ---------------------------------------------------------------------------

def fold_in_user(item_factors: np.ndarray, items, confidence, *, regularization: float,
                 gram: np.ndarray | None = None) -> np.ndarray:
    """Solve one user's vector against fixed ALS item factors (the ALS user step).

    x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u, with YᵀC_uY = YᵀY + Σ (c - 1) y yᵀ over
    the user's items, as ``implicit`` 0.7 computes it: each value is the full
    confidence c (not alpha * r), p = 1 where c > 0; a negative value is a
    disliked item (p = 0) with confidence |c|. The system is formed and
    solved in float32, the precision of the factors, as ``implicit`` does:
    two thirds of the time of float64, and x_u differs from the float64
    solution by a few 1e-6 relative (a test checks it within 1e-5 of a float64
    solve).

    Parameters
    ----------
    item_factors : ndarray, shape (n_items, n_factors)
        Y.
    items : array of int
        Rows of ``item_factors`` the user interacted with, each once.
    confidence : array of float
        c_ui for each of ``items``.
    regularization : float
        λ, the value the model was trained with.
    gram : ndarray, shape (n_factors, n_factors), optional
        YᵀY, precomputed (:attr:`shared.model.Model.gram`; float32 saves a
        conversion per call); computed when absent.

    Returns
    -------
    ndarray of float64, shape (n_factors,)
        Zeros when ``items`` is empty.

    Examples
    --------
    >>> y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> fold_in_user(y, [0], [4.0], regularization=0.1).round(4).tolist()
    [0.8651, -0.4119]
    >>> fold_in_user(y, [], [], regularization=0.1).tolist()
    [0.0, 0.0]
    """
    items = np.asarray(items, dtype=np.int64)
    n_factors = item_factors.shape[1]
    if len(items) == 0:
        return np.zeros(n_factors)
    if gram is None:
        y = item_factors.astype(np.float64)
        gram = y.T @ y
    gram = np.asarray(gram, dtype=np.float32)
    c = np.asarray(confidence, dtype=np.float32)
    y_u = np.asarray(item_factors[items], dtype=np.float32)
    a = gram + (y_u * (np.abs(c) - np.float32(1.0))[:, None]).T @ y_u
    a.flat[::n_factors + 1] += np.float32(regularization)
    b = y_u.T @ np.where(c > 0, c, np.float32(0.0))
    _, x, info = _sposv(a, b, overwrite_a=0, overwrite_b=0)
    if info != 0:  # not positive definite (λ = 0, or |c| < 1): general solver
        x = np.linalg.lstsq(a.astype(np.float64), b.astype(np.float64), rcond=None)[0]
    return x.astype(np.float64)


# ---------------------------------------------------------------------------
# Shopper state: the history and session update rules
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class History:
    """A user's accumulated confidence per item and what they bought, as the worker stores it.

    Items are external ids (they outlive model versions). ``confidence``
    holds c = 1 + decayed sum of alpha * r, as of ``updated_ts_ms``.

    Attributes
    ----------
    items : tuple of str
    confidence : tuple of float
    last_ts_ms : tuple of int
        When each item was last touched.
    updated_ts_ms : int
        The time ``confidence`` refers to.
    bought : tuple of str
        Items bought, oldest first (at most ``history_max``).
    """

    items: tuple = ()
    confidence: tuple = ()
    last_ts_ms: tuple = ()
    updated_ts_ms: int = 0
    bought: tuple = ()

    def to_dict(self) -> dict:
        """Plain JSON-able values (for a RocksDB table)."""
        return {"items": list(self.items), "confidence": list(self.confidence),
                "last_ts_ms": list(self.last_ts_ms), "updated_ts_ms": self.updated_ts_ms,
                "bought": list(self.bought)}

    @classmethod
    def from_dict(cls, value: dict | None) -> "History":
        """The inverse of :meth:`to_dict`; an empty history for None."""
        if not value:
            return cls()
        return cls(items=tuple(value["items"]), confidence=tuple(value["confidence"]),
                   last_ts_ms=tuple(value["last_ts_ms"]), updated_ts_ms=int(value["updated_ts_ms"]),
                   bought=tuple(value.get("bought", ())))


def add_to_history(history: History, item, confidence: float, ts_ms: int, *,
                   history_max: int, decay_half_life_s: float = 0.0,
                   bought: bool = False) -> History:
    """Add one event to a user's history (the update rule of worker and replay).

    The confidence above 1 of every item first decays by
    ``0.5 ** (elapsed / half-life)`` (no decay when ``decay_half_life_s`` is 0
    or time goes backwards); the event then adds its own ``confidence - 1``
    (= alpha * r), so an item's c is 1 + the decayed sum of its events'
    alpha * r, as in the batch matrix. When more than ``history_max`` items
    remain, the weakest go (lowest confidence, then least recently touched).

    Parameters
    ----------
    history : History
    item : str
        External item id.
    confidence : float
        c = 1 + alpha * r of the event (:meth:`shared.signals.SignalWeights.confidence`).
    ts_ms : int
        Event time, epoch milliseconds.
    history_max : int
    decay_half_life_s : float
    bought : bool
        The event is a purchase: the item joins ``History.bought``.

    Returns
    -------
    History
        A new value; ``history`` is not changed.

    Examples
    --------
    >>> h = add_to_history(History(), "a", 4.75, 0, history_max=2)
    >>> h = add_to_history(h, "a", 4.75, 1000, history_max=2)
    >>> h.items, h.confidence
    (('a',), (8.5,))
    >>> h = add_to_history(h, "b", 2.0, 2000, history_max=2, decay_half_life_s=1.0)
    >>> h.items, h.confidence
    (('a', 'b'), (4.75, 2.0))
    >>> h = add_to_history(h, "c", 4.75, 3000, history_max=2, bought=True)
    >>> h.items, h.bought
    (('a', 'c'), ('c',))
    """
    elapsed_s = (ts_ms - history.updated_ts_ms) / 1000.0
    factor = 0.5 ** (elapsed_s / decay_half_life_s) if decay_half_life_s > 0 and elapsed_s > 0 else 1.0
    items = list(history.items)
    conf = (list(history.confidence) if factor == 1.0
            else [1.0 + (c - 1.0) * factor for c in history.confidence])
    last = list(history.last_ts_ms)
    gain = float(confidence) - 1.0
    try:
        at = items.index(item)
        conf[at] += gain
        last[at] = max(last[at], ts_ms)
    except ValueError:
        items.append(item)
        conf.append(1.0 + gain)
        last.append(ts_ms)
    if len(items) == history_max + 1:  # the usual case: drop the one weakest, the latest on ties
        low = min(conf)
        ties = [i for i, c in enumerate(conf) if c == low]
        if len(ties) > 1:
            oldest = min(last[i] for i in ties)
            ties = [i for i in ties if last[i] == oldest]
        weakest = ties[-1]
        del items[weakest], conf[weakest], last[weakest]
    elif len(items) > history_max:  # history_max was lowered since the history was written
        keep = sorted(range(len(items)), key=lambda i: (conf[i], last[i]), reverse=True)[:history_max]
        keep.sort()
        items, conf, last = ([seq[i] for i in keep] for seq in (items, conf, last))
    bought_items = history.bought
    if bought and item not in bought_items:
        bought_items = (bought_items + (item,))[-history_max:]
    return History(items=tuple(items), confidence=tuple(conf), last_ts_ms=tuple(last),
                   updated_ts_ms=max(ts_ms, history.updated_ts_ms), bought=bought_items)


@dataclass(frozen=True)
class Session:
    """A shopper session's items in time order (repeats kept) and the items shown in it.

    Attributes
    ----------
    items : tuple of str
        External ids, newest last.
    shown : tuple of str
        Items recommended in this session, newest last.
    """

    items: tuple = ()
    shown: tuple = ()

    def to_dict(self) -> dict:
        """Plain JSON-able values (for a RocksDB table)."""
        return {"items": list(self.items), "shown": list(self.shown)}

    @classmethod
    def from_dict(cls, value: dict | None) -> "Session":
        """The inverse of :meth:`to_dict`; an empty session for None."""
        if not value:
            return cls()
        return cls(items=tuple(value["items"]), shown=tuple(value.get("shown", ())))


def add_to_session(session: Session, item, *, max_len: int) -> Session:
    """Append an event's item to the session, keeping the last ``max_len``.

    Repeats stay: coming back to an item is a signal (the ``session`` source).

    Examples
    --------
    >>> add_to_session(Session(("a", "b")), "a", max_len=2).items
    ('b', 'a')
    """
    return Session(items=(session.items + (item,))[-max_len:], shown=session.shown)


def add_shown(session: Session, item_ids, *, max_len: int) -> Session:
    """Remember items shown in the session (for ``filter_shown``), keeping the last ``max_len``.

    Examples
    --------
    >>> add_shown(Session(("a",), ("x",)), ["y", "x", "z"], max_len=3).shown
    ('y', 'x', 'z')
    """
    new = tuple(item_ids)
    fresh = set(new)
    kept = tuple(i for i in session.shown if i not in fresh)
    return Session(items=session.items, shown=(kept + new)[-max_len:])


@dataclass(frozen=True)
class ScoringParams:
    """Everything that decides a list besides the model and the shopper's state.

    The worker builds it from the settings (:meth:`from_settings`); evaluation
    builds the same object, so both rank the same way.

    Attributes
    ----------
    n : int
        Length of a list.
    blend : float
        Weight of the personal score, in [0, 1].
    sources : SourceWeights
    normalisation : {"minmax", "rank"}
    exclude_query : bool
        Leave out the item being looked at.
    exclude_session : bool
        Leave out every item seen in the session.
    filter_bought, filter_shown : bool
    history_max : int
        Items kept per user (and bought items remembered).
    decay_half_life_s : float
        Half-life of a user's past confidence; 0 = no decay.
    session_max : int
        Items kept per session (and shown items remembered).
    """

    n: int = 20
    blend: float = 0.5
    sources: SourceWeights = field(default_factory=SourceWeights)
    normalisation: str = "minmax"
    exclude_query: bool = True
    exclude_session: bool = False
    filter_bought: bool = True
    filter_shown: bool = False
    history_max: int = 100
    decay_half_life_s: float = 0.0
    session_max: int = 50

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError("blend must be in [0, 1]")

    @classmethod
    def from_settings(cls, settings, **overrides) -> "ScoringParams":
        """Take the scoring settings from a :class:`shared.config.Settings`.

        Raises :class:`shared.config.ConfigError` naming the ``RECSYS_SOURCE_*``
        settings when they leave no candidate source.
        """
        try:
            sources = SourceWeights(**{name: getattr(settings, f"source_{name}")
                                       for name in SourceWeights.__dataclass_fields__})
        except ValueError as exc:
            raise ConfigError(f"RECSYS_SOURCE_*: {exc}") from exc
        values = dict(
            n=settings.n_recommendations, blend=settings.blend, sources=sources,
            normalisation=settings.normalisation, exclude_query=settings.exclude_query,
            exclude_session=settings.exclude_session,
            filter_bought=settings.filter_bought, filter_shown=settings.filter_shown,
            history_max=settings.history_max, decay_half_life_s=settings.decay_half_life_s,
            session_max=settings.session_max)
        values.update(overrides)
        return cls(**values)

    def as_dict(self) -> dict:
        """Plain values, for reports and meta.json."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["sources"] = self.sources.as_dict()
        return out


def _index_list(model: Model, item_ids) -> list:
    """Model indices of external ids as a list; -1 for ids the model does not know."""
    return list(map(model.item_index.get, item_ids, repeat(-1)))


def _known_history(model: Model, history: History) -> tuple[list, list]:
    """(item indices, confidence) of a history's items the model knows, as lists."""
    items, confidence = _index_list(model, history.items), list(history.confidence)
    if -1 in items:
        confidence = [c for item, c in zip(items, confidence) if item >= 0]
        items = [item for item in items if item >= 0]
    return items, confidence


def to_indices(model: Model, item_ids) -> np.ndarray:
    """Model indices of external ids; -1 for ids the model does not know.

    Examples
    --------
    >>> m = _example_model()
    >>> to_indices(m, ["i2", "nope", "i0"]).tolist()
    [2, -1, 0]
    """
    return np.array(_index_list(model, item_ids), dtype=np.int64)


def history_arrays(model: Model, history: History) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, confidence) of a history's items the model knows.

    Examples
    --------
    >>> m = _example_model()
    >>> history_arrays(m, History(items=("i1", "x"), confidence=(3.0, 2.0), last_ts_ms=(0, 0)))
    (array([1]), array([3.]))
    """
    items, confidence = _known_history(model, history)
    return np.array(items, dtype=np.int64), np.array(confidence, dtype=np.float64)


# ---------------------------------------------------------------------------
# Per-model precomputation
# ---------------------------------------------------------------------------

class _Prepared:
    """What scoring needs from a model, computed once per model object."""

    def __init__(self, model: Model):
        n_items = model.n_items
        self.n_items = n_items
        pop = np.asarray(model.popularity, dtype=np.float64)
        # Most popular first; ties to the lower index.
        self.popular = np.lexsort((np.arange(n_items), -pop)).astype(np.int64)
        cat = np.asarray(model.item_category, dtype=np.int64)
        by_cat = self.popular[cat[self.popular] >= 0]
        cats = cat[by_cat]
        order = np.argsort(cats, kind="stable")
        by_cat, cats = by_cat[order], cats[order]
        bounds = np.flatnonzero(np.diff(cats)) + 1
        self.popular_in_category = {int(c[0]): part for c, part in
                                    zip(np.split(cats, bounds), np.split(by_cat, bounds)) if len(c)}
        self.item_category = cat
        self.category_index = {name: code for code, name in enumerate(np.asarray(model.categories).tolist())}
        self.item_factors = model.item_factors
        self.gram = model.gram
        self.gram32 = self.gram.astype(np.float32)
        self.regularization = model.regularization if "params" in model.meta else 0.0
        # The neighbour lists with their padding (and any index out of range)
        # pointing at the dummy item ``n_items``, which is always blocked; the
        # dummy item has a row of padding too, for the anchors a session lacks.
        self.lists = []
        for items, scores in ((model.similar_items, model.similar_scores),
                              (model.cooc_items, model.cooc_scores),
                              (model.next_items, model.next_scores)):
            items = np.asarray(items, dtype=np.int64)
            items = np.where((items >= 0) & (items < n_items), items, n_items)
            scores = np.where(items < n_items, np.maximum(scores, 0), 0).astype(np.float64)
            self.lists.append((np.vstack([items, np.full((1, items.shape[1]), n_items)]),
                               np.vstack([scores, np.zeros((1, scores.shape[1]))])))
        self.woodbury = _woodbury_tables(self.item_factors, self.gram, self.regularization)
        self.layouts: dict = {}  # (sources, anchor columns) -> _layout()
        # The longest history folded in through ``woodbury``: beyond, the k × k solve is cheaper.
        self.woodbury_max = 3 * self.item_factors.shape[1] // 4


def _woodbury_tables(item_factors: np.ndarray, gram: np.ndarray,
                     regularization: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, L⁻¹) for the batched fold-in, with YᵀY + λI = LLᵀ and W = YL⁻ᵀ plus a zero
    row (padding) at ``n_items``; None when λ <= 0."""
    if regularization <= 0:
        return None
    n_factors = gram.shape[0]
    try:
        chol = np.linalg.cholesky(gram + regularization * np.eye(n_factors))
    except np.linalg.LinAlgError:
        return None
    w = solve_triangular(chol, item_factors.T.astype(np.float64), lower=True).T
    return (np.vstack([w, np.zeros((1, n_factors))]),
            solve_triangular(chol, np.eye(n_factors), lower=True))


_prepared: "weakref.WeakKeyDictionary[Model, _Prepared]" = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()
_local = threading.local()


def prepare(model: Model) -> None:
    """Compute what scoring needs from ``model`` now (YᵀY, popular lists, neighbour tables).

    Otherwise the first list scored with the model pays for it; the worker
    calls this while loading a version, off the event path.
    """
    _prepare(model)


def _prepare(model: Model) -> _Prepared:
    prep = _prepared.get(model)
    if prep is None:
        with _prepared_lock:
            prep = _prepared.get(model)
            if prep is None:
                prep = _prepared[model] = _Prepared(model)
    return prep


#: Most merge slots (rows × (n_items + 1)) one scoring thread keeps: a batch with more
#: rows than fit is ranked in chunks of rows.
MERGE_SLOTS = 1 << 22


class _Scratch:
    """Per-thread work arrays of one model: block flags (reset after use) and merge slots
    (their content does not matter)."""

    def __init__(self, n_items: int):
        self.flags = np.zeros(n_items + 1, dtype=bool)
        self.flags[n_items] = True  # the padding of neighbour lists
        self.slots = np.zeros(0, dtype=np.int64)

    def merge_slots(self, size: int) -> np.ndarray:
        """At least ``size`` slots."""
        if len(self.slots) < size:
            self.slots = np.empty(size, dtype=np.int64)
        return self.slots


def _scratch(model: Model, n_items: int) -> _Scratch:
    per_thread = getattr(_local, "scratch", None)
    if per_thread is None:
        per_thread = _local.scratch = weakref.WeakKeyDictionary()
    scratch = per_thread.get(model)
    if scratch is None:
        scratch = per_thread[model] = _Scratch(n_items)
    return scratch


def popular_items(model: Model, category: int = -1) -> np.ndarray:
    """All items of ``category`` (or all items when -1), most popular first.

    Computed once per model. Ties go to the lower index.

    Examples
    --------
    >>> m = _example_model()
    >>> popular_items(m).tolist(), popular_items(m, 1).tolist()
    ([3, 0, 1, 2], [3, 2])
    """
    prep = _prepare(model)
    if category < 0:
        return prep.popular
    return prep.popular_in_category.get(int(category), np.zeros(0, dtype=np.int64))


# ---------------------------------------------------------------------------
# Normalising, blending and the best n, per segment (one segment per list)
# ---------------------------------------------------------------------------

class _Segments:
    """The segment (list) of each entry of flat arrays: ascending, so that each is one run."""

    def __init__(self, seg: np.ndarray, n: int):
        self.seg = seg
        self.n = n
        self.counts = np.bincount(seg, minlength=n)
        self.starts = np.add.accumulate(self.counts) - self.counts
        self.complete = bool(np.logical_and.reduce(self.counts))

    @classmethod
    def single(cls, length: int) -> "_Segments":
        """One segment of ``length`` entries."""
        return cls(np.zeros(length, dtype=np.int64), 1)

    def subset(self, keep: np.ndarray) -> "_Segments":
        """The segments of the entries ``keep`` selects."""
        return _Segments(self.seg[keep], self.n)

    def extreme(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        """``np.maximum`` or ``np.minimum`` of each segment along the last axis of ``values``
        (0 for an empty segment)."""
        if self.complete:
            return ufunc.reduceat(values, self.starts, axis=-1)
        out = np.zeros(values.shape[:-1] + (self.n,))
        filled = self.counts > 0
        if filled.any():
            out[..., filled] = ufunc.reduceat(values, self.starts[filled], axis=-1)
        return out


def normalise(scores: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Scores mapped to [0, 1] within the given candidates.

    ``minmax``: (s - min) / (max - min), all 1 when every score is equal.
    ``rank``: 1 for the best, falling linearly to 0 for the worst (ties share
    their best rank), all 1 for a single candidate.

    Examples
    --------
    >>> normalise(np.array([2.0, 4.0, 3.0])).tolist()
    [0.0, 1.0, 0.5]
    >>> normalise(np.array([2.0, 9.0, 9.0, 3.0]), "rank").round(3).tolist()
    [0.0, 1.0, 1.0, 0.333]
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; use one of {NORMALISATIONS}")
    scores = np.asarray(scores, dtype=np.float64)
    return _normalise(scores, _Segments.single(len(scores)), method)


def _normalise(values: np.ndarray, segments: _Segments, method: str) -> np.ndarray:
    """:func:`normalise` within each segment."""
    seg = segments.seg
    if method == "minmax":
        low = segments.extreme(np.minimum, values)[seg]
        span = segments.extreme(np.maximum, values)[seg] - low
        return np.divide(values - low, span, out=np.ones(len(values)), where=span > 0)
    order = np.lexsort((-values, seg))
    ranked = values[order]
    tie_start = np.ones(len(values), dtype=bool)
    tie_start[1:] = (ranked[1:] != ranked[:-1]) | (seg[1:] != seg[:-1])
    position = np.arange(len(values))
    rank = np.empty(len(values))
    rank[order] = np.maximum.accumulate(np.where(tie_start, position, 0)) - segments.starts[seg]
    last = (segments.counts - 1)[seg]
    return 1.0 - np.divide(rank, last, out=np.zeros_like(rank), where=last > 0)


def _mix(similarity: np.ndarray, personal: np.ndarray, blend: float) -> np.ndarray:
    return (1.0 - blend) * similarity + blend * personal


def blend_scores(similarity: np.ndarray, personal: np.ndarray | None, blend: float,
                 normalisation: str = "minmax") -> np.ndarray:
    """The paper's blend: ``(1 - blend) * norm(similarity) + blend * norm(personal)``.

    ``personal`` None (no user vector) means similarity alone.

    Examples
    --------
    >>> blend_scores(np.array([1.0, 0.0, 0.5]), np.array([0.0, 2.0, 1.0]), 0.5).tolist()
    [0.5, 0.5, 0.5]
    >>> blend_scores(np.array([1.0, 0.0]), None, 0.5).tolist()
    [1.0, 0.0]
    """
    sim = normalise(similarity, normalisation)
    if personal is None or blend <= 0:
        return sim
    return _mix(sim, normalise(personal, normalisation), blend)


def anchor_weights(n_anchors: int, decay: float) -> np.ndarray:
    """Weight of each anchor, oldest first: ``decay ** steps before the newest``.

    Examples
    --------
    >>> anchor_weights(3, 0.5).tolist(), anchor_weights(2, 0.0).tolist()
    ([0.25, 0.5, 1.0], [0.0, 1.0])
    """
    return np.power(float(decay), np.arange(n_anchors - 1, -1, -1, dtype=np.float64))


def _top_mask(segments: _Segments, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """True for the ``k`` best entries of each segment (all of a shorter one); ties to the
    lower item."""
    seg = segments.seg
    width = int(segments.counts.max(initial=0))
    if width <= k:
        return np.ones(len(seg), dtype=bool)
    if k <= 0:
        return np.zeros(len(seg), dtype=bool)
    if segments.n == 1:
        kth = np.partition(scores, width - k)[width - k]
    else:  # each segment's k-th best from a table of segments, padded with -inf
        table = np.full((segments.n, width), -np.inf)
        table[seg, np.arange(len(seg)) - segments.starts[seg]] = scores
        table.partition(width - k, axis=1)
        kth = table[:, width - k][seg]
    keep = scores > kth
    room = k - np.bincount(seg[keep], minlength=segments.n)
    tied = (scores == kth).nonzero()[0]
    tied = tied[np.lexsort((items[tied], seg[tied]))]
    tied_seg = seg[tied]
    rank = np.arange(len(tied)) - np.searchsorted(tied_seg, tied_seg)
    keep[tied[rank < room[tied_seg]]] = True
    return keep


#: Above this many entries :func:`_best` cuts each segment to its best before sorting.
_SORT_ALL = 2048


def _best(segments: _Segments, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries of each segment, segment by segment, best first
    (ties to the lower item)."""
    chosen, seg = None, segments.seg
    if len(scores) > _SORT_ALL:
        chosen = _top_mask(segments, items, scores, k).nonzero()[0]
        items, scores, seg = items[chosen], scores[chosen], seg[chosen]
    order = np.lexsort((items, -scores, seg))
    seg = seg[order]
    order = order[np.arange(len(order)) - seg.searchsorted(seg) < k]
    return order if chosen is None else chosen[order]


def _top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (item, score) pairs, best first, ties to the lower index."""
    order = _best(_Segments.single(len(items)), items, scores, n)
    return items[order], scores[order]


# ---------------------------------------------------------------------------
# Fold-in of a batch
# ---------------------------------------------------------------------------

#: The batched fold-in pads a history to a multiple of this many items.
FOLD_IN_STEP = 8


def _fold_in_batch(prep: _Prepared, histories) -> list[np.ndarray | None]:
    """:func:`fold_in_user` of each (items, confidence) of ``histories`` (items the model knows).

    A history of at most :attr:`_Prepared.woodbury_max` items with every
    |c| >= 1 (and finite) is solved through the Woodbury identity, an h × h
    system instead of the k × k normal equations: with YᵀY + λI = LLᵀ and
    W = YL⁻ᵀ, x_u = L⁻ᵀ W_uᵀ (I + D_u W_u W_uᵀ)⁻¹ c⁺, D_u = diag(|c| - 1),
    c⁺ = max(c, 0). Such histories are padded with zero rows to a multiple of
    :data:`FOLD_IN_STEP` and stacked per padded length; each system is solved
    on its own, so a user's vector does not depend on the rest of the batch.
    Longer histories, and all of them when λ = 0, take :func:`fold_in_user`.
    None for an empty history.
    """
    vectors: list[np.ndarray | None] = [None] * len(histories)
    stacks: dict[int, list[int]] = {}
    for i, (items, confidence) in enumerate(histories):
        if not len(items):
            continue
        if (prep.woodbury is not None and len(items) <= prep.woodbury_max
                and min(map(abs, confidence)) >= 1.0 and math.isfinite(sum(confidence))):
            stacks.setdefault(-(-len(items) // FOLD_IN_STEP) * FOLD_IN_STEP, []).append(i)
        else:
            vectors[i] = fold_in_user(prep.item_factors, items, confidence,
                                      regularization=prep.regularization, gram=prep.gram32)
    for width, members in stacks.items():
        for i, x in zip(members, _woodbury_fold_in(prep, [histories[i] for i in members], width)):
            vectors[i] = x
    return vectors


def _woodbury_fold_in(prep: _Prepared, histories, width: int) -> np.ndarray:
    """x_u of each history (at most ``width`` items each), one stack: shape (len(histories), k)."""
    w_table, l_inv = prep.woodbury
    pad = prep.n_items  # the zero row of W; its confidence 0 adds nothing to c⁺
    items = np.array([[*i, *[pad] * (width - len(i))] for i, _ in histories], dtype=np.int64)
    conf = np.array([[*c, *[0.0] * (width - len(c))] for _, c in histories], dtype=np.float64)
    w = w_table[items]
    system = w @ w.transpose(0, 2, 1)
    system *= (np.abs(conf) - 1.0)[:, :, None]
    system.reshape(len(histories), -1)[:, ::width + 1] += 1.0
    # I + DK is similar to an SPD matrix with eigenvalues >= 1: never singular.
    v = np.array([_gesv(a, b)[2] for a, b in zip(system, np.maximum(conf, 0.0))])
    return (v[:, None, :] @ w @ l_inv)[:, 0]


# ---------------------------------------------------------------------------
# Recommending a batch
# ---------------------------------------------------------------------------

class _Request(NamedTuple):
    """One list to compute, in model indices (:func:`_request`)."""

    query: int  # -1: unknown to the model
    category: int  # the query item's, else the event's (-1: none)
    items: list  # the history's items the model knows, and their confidence
    confidence: list
    anchors: list  # known session items and the query item, newest last, at most ``window``
    blocked: list  # items never recommended (unknown ones are ignored)
    user_factors: np.ndarray | None  # a fixed vector; None: fold in ``items``


def _request(prep: _Prepared, params: ScoringParams, query: int, category: int, items: list,
             confidence: list, session: list, bought: list, shown: list,
             user_factors: np.ndarray | None) -> _Request:
    """A :class:`_Request` from model indices (lists of int; -1 or out of range: unknown)."""
    n_items = prep.n_items
    if 0 <= query < n_items:
        category = int(prep.item_category[query])
    else:
        query = -1
    anchors = session
    if query >= 0 and (not session or session[-1] != query):
        anchors = session + [query]
    anchors = [a for a in anchors if 0 <= a < n_items][-params.sources.window:]
    blocked = bought + shown
    if params.exclude_query and query >= 0:
        blocked.append(query)
    if params.exclude_session:
        blocked += session
    return _Request(query, category, items, confidence, anchors, blocked, user_factors)


def _state_request(model: Model, prep: _Prepared, params: ScoringParams, history: History,
                   session: Session, query_item, query_category: str | None,
                   user_factors: np.ndarray | None = None) -> _Request:
    """A :class:`_Request` from a shopper's state (external ids)."""
    items, confidence = _known_history(model, history)
    return _request(prep, params, model.item_index.get(query_item, -1),
                    prep.category_index.get(query_category, -1), items, confidence,
                    _index_list(model, session.items),
                    _index_list(model, history.bought) if params.filter_bought else [],
                    _index_list(model, session.shown) if params.filter_shown else [],
                    user_factors)


def _user_vectors(prep: _Prepared, requests: list[_Request],
                  blend: float) -> list[np.ndarray | None]:
    """x_u of each request: its fixed vector, else folded in; None without one or when
    ``blend`` is 0."""
    if blend <= 0:
        return [None] * len(requests)
    vectors = [r.user_factors if r.user_factors is not None and np.any(r.user_factors) else None
               for r in requests]
    fold = [i for i, r in enumerate(requests) if r.user_factors is None]
    folded = _fold_in_batch(prep, [(requests[i].items, requests[i].confidence) for i in fold])
    for i, x in zip(fold, folded):
        vectors[i] = x
    return vectors


def _layout(prep: _Prepared, sources: SourceWeights, width: int) -> tuple[list, np.ndarray | None]:
    """For ``width`` anchor columns: (list index, anchor weights or None: newest anchor only)
    per active source, and the source of each entry column (None for a single source)."""
    key = (sources, width)
    layout = prep.layouts.get(key)
    if layout is None:
        parts, sizes = [], []
        for s, _, decay in sources.active:
            rows = width if decay > 0 else 1
            parts.append((s, anchor_weights(sources.window, decay)[-rows:] if decay > 0 else None))
            sizes.append(rows * (prep.lists[s][0].shape[1] if s < len(prep.lists) else 1))
        columns = np.repeat(np.arange(len(sizes)), sizes) if len(sizes) > 1 else None
        layout = (parts, columns)
        if len(prep.layouts) < 256:
            prep.layouts[key] = layout
    return layout


def _gather(prep: _Prepared, requests: list[_Request],
            sources: SourceWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every source's entries for each request: items and weighted values, shape (B, C), and
    the source (position in ``sources.active``) of each column (None for a single source).

    Anchors are right-aligned (the missing ones are the dummy item, always
    blocked) and weighted from one table of ``window`` weights, so that a
    request's entries keep their values and order whatever the batch.
    """
    width = max(1, max(len(r.anchors) for r in requests)) if sources.decays else 1
    pad = [prep.n_items] * width
    anchors = np.array([(pad + r.anchors)[-width:] for r in requests], dtype=np.int64)
    parts, columns = _layout(prep, sources, width)
    items, values = [], []
    for s, weights in parts:
        rows = anchors[:, -1:] if weights is None else anchors
        if s < len(prep.lists):
            table, scores = prep.lists[s]
            cand, value = table[rows], scores[rows]
            if weights is not None:
                value = value * weights[:, None]
        else:  # the session's own items
            cand = rows
            value = np.ones(rows.shape) if weights is None else np.ones(rows.shape) * weights
        items.append(cand.reshape(len(requests), -1))
        values.append(value.reshape(len(requests), -1))
    if len(items) == 1:
        return items[0], values[0], None
    return np.concatenate(items, axis=1), np.concatenate(values, axis=1), columns


def _blocked_keys(prep: _Prepared, requests: list[_Request]) -> np.ndarray:
    """Merge keys (row × (n_items + 1) + item) of every request's blocked items and dummy item."""
    n_items = prep.n_items
    span = n_items + 1
    return np.array([row * span + item for row, r in enumerate(requests)
                     for item in (*r.blocked, n_items) if 0 <= item <= n_items], dtype=np.int64)


def _merge(prep: _Prepared, scratch: _Scratch, requests: list[_Request], items: np.ndarray,
           values: np.ndarray, columns: np.ndarray | None, n_sources: int,
           unavailable: np.ndarray | None) -> tuple[_Segments, np.ndarray, np.ndarray]:
    """The allowed candidates, one per (request, item), and their per-source sums.

    Returns segments (the request of each candidate), items and sums, shape
    (n_sources, n_candidates); a request's candidates keep the order of their
    last entry. Duplicates merge without sorting: every entry writes its
    position into the slot of its (request, item) and the last one owns it; a
    blocked item's slot is then overwritten with -1. An item's entries add up
    in column order, whatever else is in the batch.
    """
    n_rows = len(items)
    span = prep.n_items + 1
    keys = items + np.arange(0, n_rows * span, span)[:, None]
    flat = keys.ravel()
    slots = scratch.merge_slots(n_rows * span)
    position = np.arange(len(flat))
    slots[flat] = position
    slots[_blocked_keys(prep, requests)] = -1
    if unavailable is not None:
        slots[flat[np.append(unavailable, True)[items.ravel()]]] = -1
    unique = flat[slots[flat] == position]
    n = len(unique)
    slots[unique] = np.arange(n)
    bins = slots[keys] + 1  # 0 for the blocked entries, 1 + candidate otherwise
    if columns is not None:
        bins += columns * (n + 1)
    sums = np.bincount(bins.ravel(), weights=values.ravel(), minlength=n_sources * (n + 1))
    request = unique // span
    return (_Segments(request, n_rows), unique - request * span,
            sums.reshape(n_sources, n + 1)[:, 1:])


def _similarity(segments: _Segments, sums: np.ndarray, sources: SourceWeights) -> np.ndarray:
    """Each source's sums divided by their largest in the request, added up with the source
    weights (in the order of the sources)."""
    top = segments.extreme(np.maximum, sums)
    scale = np.divide(sources.active_weights, top, out=np.zeros(top.shape), where=top > 0)
    terms = scale[:, segments.seg] * sums
    sim = terms[0]
    for term in terms[1:]:
        sim = sim + term
    return sim


def _personal(prep: _Prepared, items: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x_u · y_i for ``items``, in float32 like the factors."""
    return prep.item_factors[items] @ vector.astype(np.float32)


def _blended(prep: _Prepared, segments: _Segments, items: np.ndarray, sim: np.ndarray,
             vectors: list, params: ScoringParams) -> tuple[_Segments, np.ndarray, np.ndarray]:
    """The candidates the personal score re-ranks (``pool``) and their blended score.

    The personal score is one matrix-vector product per request, over the
    request's candidates in their own order: the same numbers in any batch.
    """
    personal = [v is not None for v in vectors]
    if not any(personal):
        return segments, items, _normalise(sim, segments, params.normalisation)
    pool = params.sources.pool
    if 0 < pool < np.maximum.reduce(segments.counts):
        keep = _top_mask(segments, items, sim, pool)
        if not all(personal):
            keep |= ~np.array(personal)[segments.seg]
        segments, items, sim = segments.subset(keep), items[keep], sim[keep]
    dots = np.zeros(len(items))
    for start, count, vector in zip(segments.starts.tolist(), segments.counts.tolist(), vectors):
        if vector is not None and count:
            dots[start:start + count] = _personal(prep, items[start:start + count], vector)
    score = _normalise(sim, segments, params.normalisation)
    mixed = _mix(score, _normalise(dots, segments, params.normalisation), params.blend)
    if not all(personal):
        mixed = np.where(np.array(personal)[segments.seg], mixed, score)
    return segments, items, mixed


def _rank(model: Model, prep: _Prepared, requests: list[_Request], params: ScoringParams,
          unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request (see the module docstring), in chunks of rows that fit
    :data:`MERGE_SLOTS`."""
    rows = max(1, MERGE_SLOTS // (prep.n_items + 1))
    scratch = _scratch(model, prep.n_items)
    return [rec for start in range(0, len(requests), rows)
            for rec in _rank_rows(model, prep, scratch, requests[start:start + rows], params,
                                  unavailable)]


def _rank_rows(model: Model, prep: _Prepared, scratch: _Scratch, requests: list[_Request],
               params: ScoringParams, unavailable: np.ndarray | None) -> list[Recommendation]:
    vectors = _user_vectors(prep, requests, params.blend)
    segments, items, sums = _merge(prep, scratch, requests,
                                   *_gather(prep, requests, params.sources),
                                   len(params.sources.active), unavailable)
    found = (segments.counts > 0).tolist()
    if len(items):
        segments, items, score = _blended(prep, segments, items,
                                          _similarity(segments, sums, params.sources), vectors,
                                          params)
        order = _best(segments, items, score, params.n)
        items, score = items[order], score[order].astype(np.float32)
        ends = np.add.accumulate(np.bincount(segments.seg[order], minlength=len(requests))).tolist()
    else:
        score, ends = np.zeros(0, dtype=np.float32), [0] * len(requests)
    return [_finish(model, prep, r, params, v, f, items[start:end], score[start:end], unavailable)
            for r, v, f, start, end in zip(requests, vectors, found, [0] + ends, ends)]


def _strategy(query: int, personal: bool) -> str:
    if query >= 0:
        return "personalized_similar" if personal else "similar"
    return "session_fold_in" if personal else "session_similar"


def _finish(model: Model, prep: _Prepared, request: _Request, params: ScoringParams,
            vector: np.ndarray | None, found: bool, items: np.ndarray, scores: np.ndarray,
            unavailable: np.ndarray | None) -> Recommendation:
    """A request's list from its best candidates (``found``: it had any): without them the
    popular items ranked by its vector, then the fall-backs for what is left of ``n``."""
    if found and len(items) >= params.n:
        return Recommendation(items, scores, _strategy(request.query, vector is not None))
    parts_items, parts_scores, names = [], [], []
    if found:
        parts_items.append(items)
        parts_scores.append(scores)
        names.append(_strategy(request.query, vector is not None))
    with _Blocked(_scratch(model, prep.n_items), prep.n_items, (request.blocked,),
                  unavailable) as blocked:
        if not found and vector is not None:
            pool = prep.popular[:FOLD_IN_POOL]
            pool = pool[blocked.allowed(pool)]
            if len(pool):
                personal = _personal(prep, pool, vector)
                top_items, top_scores = _top(pool, normalise(personal, params.normalisation),
                                             params.n)
                parts_items.append(top_items)
                parts_scores.append(top_scores)
                names.append("session_fold_in")
        chosen = parts_items[0] if parts_items else np.zeros(0, dtype=np.int64)
        if len(chosen) < params.n:
            fill, fill_names = _fill(prep, chosen, params.n, request.category, blocked)
            if fill:
                count = sum(len(f) for f in fill)
                parts_items.extend(fill)
                parts_scores.append(-np.arange(1, count + 1, dtype=np.float64) / (count + 1))
                names.extend(fill_names)
    if not parts_items:
        return Recommendation(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32),
                              "popular")
    return Recommendation(np.concatenate(parts_items).astype(np.int64),
                          np.concatenate(parts_scores).astype(np.float32), "+".join(names))


class _Blocked:
    """Items that may not be recommended, flagged in the scratch array while in use."""

    def __init__(self, scratch: _Scratch, n_items: int, groups, unavailable: np.ndarray | None):
        arrays = []
        for group in groups:
            if group is None:
                continue
            if isinstance(group, (set, frozenset)):
                group = list(group)
            group = np.asarray(group, dtype=np.int64).ravel()
            if len(group):
                arrays.append(group)
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        self.items = items[(items >= 0) & (items < n_items)]
        self.unavailable = unavailable
        self.flags = scratch.flags

    def __enter__(self) -> "_Blocked":
        self.flags[self.items] = True
        return self

    def __exit__(self, *exc) -> None:
        self.flags[self.items] = False

    def allowed(self, items: np.ndarray) -> np.ndarray:
        """True for each of ``items`` (indices <= n_items) that may be recommended."""
        keep = ~self.flags[items]
        if self.unavailable is not None:
            keep[keep] = ~self.unavailable[items[keep]]
        return keep


def _fill(prep: _Prepared, chosen: np.ndarray, n: int, category: int,
          blocked: _Blocked) -> tuple[list[np.ndarray], list[str]]:
    """Fall-back items (popular in category, then overall) for the ``n - len(chosen)`` free slots."""
    parts, names = [], []
    taken = chosen
    need = n - len(chosen)
    pools = (("popular_category", prep.popular_in_category.get(category) if category >= 0 else None),
             ("popular", prep.popular))
    for name, pool in pools:
        if need <= 0 or pool is None or len(pool) == 0:
            continue
        got, start, size = [], 0, need + len(taken) + len(blocked.items)
        while need > 0 and start < len(pool):
            head = pool[start:start + size]
            keep = blocked.allowed(head)
            if len(taken):
                keep &= ~np.isin(head, taken)
            picked = head[keep][:need]
            if len(picked):
                got.append(picked)
                taken = np.concatenate([taken, picked])
                need -= len(picked)
            start += size
            size *= 2
        if got:
            parts.append(np.concatenate(got))
            names.append(name)
    return parts, names


def _known(prep: _Prepared, items, confidence) -> tuple[list, list]:
    """The (items, confidence) of a history that the model knows, as lists."""
    items = np.asarray(items, dtype=np.int64).ravel()
    known = (items >= 0) & (items < prep.n_items)
    return items[known].tolist(), np.asarray(confidence, dtype=np.float64).ravel()[known].tolist()


def _ints(values) -> list:
    return np.asarray(list(values) if isinstance(values, (set, frozenset)) else values,
                      dtype=np.int64).ravel().tolist()


# ---------------------------------------------------------------------------
# The public entry points
# ---------------------------------------------------------------------------

def recommend(model: Model, query_item: int, history_items=(), history_confidence=(), *,
              session_items=(), bought=(), shown=(), unavailable: np.ndarray | None = None,
              n: int = 20, blend: float = 0.5, sources: SourceWeights = SourceWeights(),
              normalisation: str = "minmax", exclude_query: bool = True,
              exclude_session: bool = False, query_category: int = -1,
              user_factors: np.ndarray | None = None) -> Recommendation:
    """Personalized similar items for the item a shopper is looking at.

    Parameters
    ----------
    model : Model
    query_item : int
        Model index of the item being looked at; -1 when the model does not know it.
    history_items, history_confidence : array
        The user's items (model indices, each once) and their confidence c,
        folded in with the model's λ (:func:`fold_in_user`).
    session_items : array of int
        The session's items in time order, newest last (repeats allowed; -1
        for unknown items). The query item is taken as the newest anchor when
        it is not already last.
    bought, shown : array of int
        Items to leave out: already bought; already shown in this session.
    unavailable : ndarray of bool, shape (n_items,), optional
        True for items that cannot be shown (out of stock).
    n : int
        Length of the list.
    blend : float
        Weight of the personal score against the similarity, in [0, 1].
    sources : SourceWeights
        The candidate sources and their weights.
    normalisation : {"minmax", "rank"}
        How similarity and personal score are made comparable (:func:`normalise`).
    exclude_query : bool
        Leave out the query item itself.
    exclude_session : bool
        Leave out every item of the session.
    query_category : int
        Category code of the query item when the model does not know the item
        (from the event); the model's own category wins otherwise.
    user_factors : ndarray, optional
        The user's vector when the caller has it already; else folded in here.

    Returns
    -------
    Recommendation

    Examples
    --------
    Item 0's similar items are 1 then 2; a user who liked item 2 gets 2 first.

    >>> m = _example_model()
    >>> recommend(m, 0, n=2, blend=0.0).item_ids(m)
    ['i1', 'i2']
    >>> r = recommend(m, 0, [2], [16.0], n=2, blend=0.8)
    >>> r.item_ids(m), r.strategy
    (['i2', 'i1'], 'personalized_similar')
    >>> r = recommend(m, -1, n=3, query_category=1)
    >>> r.item_ids(m), r.strategy
    (['i3', 'i2', 'i0'], 'popular_category+popular')
    """
    prep = _prepare(model)
    params = ScoringParams(n=n, blend=blend, sources=sources, normalisation=normalisation,
                           exclude_query=exclude_query, exclude_session=exclude_session)
    items, confidence = _known(prep, history_items, history_confidence)
    request = _request(prep, params, int(query_item), int(query_category), items, confidence,
                       _ints(session_items), _ints(bought), _ints(shown), user_factors)
    return _rank(model, prep, [request], params, unavailable)[0]


def score_event(model: Model, history: History, session: Session, query_item,
                params: ScoringParams, *, query_category: str | None = None,
                unavailable: np.ndarray | None = None,
                user_factors: np.ndarray | None = None) -> Recommendation:
    """The list for one event, from the shopper's state after the event.

    The replay's whole per-event step, and :func:`score_events` on a batch of
    one: ids to model indices, the filters the settings ask for, the ranking
    of :func:`recommend`.

    Parameters
    ----------
    model : Model
    history : History
        The user's history, the event already added (:func:`add_to_history`).
    session : Session
        The session, the event already added (:func:`add_to_session`).
    query_item : str
        External id of the event's item.
    params : ScoringParams
    query_category : str, optional
        The event's category, used when the model does not know the item.
    unavailable : ndarray of bool, shape (n_items,), optional
    user_factors : ndarray, optional
        A fixed user vector instead of the one folded in from ``history``
        (all zeros: no personal score); see :func:`recommend`.

    Returns
    -------
    Recommendation

    Examples
    --------
    >>> m = _example_model()
    >>> p = ScoringParams(n=2, blend=0.0)
    >>> h = add_to_history(History(), "i0", 4.75, 0, history_max=10)
    >>> s = add_to_session(Session(), "i0", max_len=10)
    >>> score_event(m, h, s, "i0", p).item_ids(m)
    ['i1', 'i2']
    """
    prep = _prepare(model)
    request = _state_request(model, prep, params, history, session, query_item, query_category,
                             user_factors)
    return _rank(model, prep, [request], params, unavailable)[0]


def score_events(model: Model, requests, params: ScoringParams) -> list[Recommendation]:
    """The lists for a batch of events: :func:`score_event` of each, computed together.

    The fold-ins of the batch are solved as stacks and the candidates,
    filters, normalisation, blend and best ``n`` are computed as arrays over
    the batch. A list is the same, bit for bit, whatever else is in its batch.

    Parameters
    ----------
    model : Model
    requests : sequence of (History, Session, str, str or None)
        ``(history, session, query_item, query_category)`` per event, as
        :func:`score_event` takes them; the same user may come more than once.
    params : ScoringParams

    Returns
    -------
    list of Recommendation
        One per request, in order.

    Examples
    --------
    >>> m = _example_model()
    >>> p = ScoringParams(n=2, blend=0.0)
    >>> s = add_to_session(Session(), "i0", max_len=10)
    >>> [r.item_ids(m) for r in score_events(m, [(History(), s, "i0", None),
    ...                                          (History(), Session(), "new", "b")], p)]
    [['i1', 'i2'], ['i3', 'i2']]
    """
    prep = _prepare(model)
    return _rank(model, prep, [_state_request(model, prep, params, history, session, item, category)
                               for history, session, item, category in requests], params)


def recommend_for_user(model: Model, history_items, history_confidence, *, n: int = 20,
                       bought=(), shown=(), exclude=(), user_factors: np.ndarray | None = None,
                       similar_to: int = -1, blend: float = 1.0,
                       normalisation: str = "minmax") -> Recommendation:
    """Rank the whole catalogue for a user (``user_items``), optionally blended
    with cosine similarity to one item (the original project's ensemble).

    Parameters
    ----------
    model : Model
    history_items, history_confidence : array
        Folded in unless ``user_factors`` is given.
    n : int
    bought, shown, exclude : array of int
        Items to leave out.
    user_factors : ndarray, optional
    similar_to : int
        With ``blend`` < 1: mix in the factor cosine to this item (-1: none).
    blend : float
        Weight of the user's score; 1 ranks by ``x_u · y_i`` alone.
    normalisation : {"minmax", "rank"}

    Returns
    -------
    Recommendation
        Strategy ``user_items``, ``ensemble`` when mixed with similarity, or
        ``popular`` when the user has no vector.

    Examples
    --------
    >>> m = _example_model()
    >>> recommend_for_user(m, [2], [16.0], n=2, exclude=[2]).item_ids(m)
    ['i3', 'i1']
    """
    prep = _prepare(model)
    if user_factors is None:
        user_factors = _fold_in_batch(prep, [_known(prep, history_items, history_confidence)])[0]
    with _Blocked(_scratch(model, prep.n_items), prep.n_items, (bought, shown, exclude),
                  None) as blocked:
        if user_factors is None or not np.any(user_factors):
            fill, _ = _fill(prep, np.zeros(0, dtype=np.int64), n, -1, blocked)
            items = fill[0] if fill else np.zeros(0, dtype=np.int64)
            scores = -np.arange(1, len(items) + 1, dtype=np.float32) / (len(items) + 1)
            return Recommendation(items, scores, "popular")
        y = prep.item_factors
        score = (y @ user_factors.astype(np.float32)).astype(np.float64)
        strategy = "user_items"
        if 0 <= similar_to < prep.n_items and blend < 1:
            norms = np.linalg.norm(y, axis=1)
            norms[norms == 0] = 1.0
            cosine = (y @ y[similar_to]) / (norms * norms[similar_to])
            score = blend_scores(cosine, score, blend, normalisation)
            strategy = "ensemble"
        cand = np.arange(prep.n_items)
        keep = blocked.allowed(cand)
        items, scores = _top(cand[keep], score[keep], n)
    return Recommendation(items, scores.astype(np.float32), strategy)


def _example_model() -> Model:
    """A four-item model for the examples: 0 ~ 1, 2 ~ 3 in factor space."""
    y = np.array([[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.2, 0.9]], dtype=np.float32)
    pad = np.full((4, 2), -1, dtype=np.int32)
    zeros = np.zeros((4, 2), dtype=np.float32)
    return Model(
        version="example", item_ids=np.array(["i0", "i1", "i2", "i3"]), item_factors=y,
        similar_items=np.array([[1, 2], [0, 3], [3, 0], [2, 1]], dtype=np.int32),
        similar_scores=np.array([[0.99, 0.2], [0.99, 0.4], [0.99, 0.2], [0.99, 0.4]],
                                dtype=np.float32),
        cooc_items=pad, cooc_scores=zeros, next_items=pad, next_scores=zeros,
        popularity=np.array([3.0, 2.0, 1.0, 5.0], dtype=np.float32),
        item_category=np.array([0, 0, 1, 1], dtype=np.int32), categories=np.array(["a", "b"]),
        meta={"params": {"regularization": 0.1}})
