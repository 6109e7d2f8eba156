"""THE scoring path: fold-in, candidates, blend, filters and fall-backs.

The stream worker (per event), batch evaluation (replay) and the HTTP views
call these functions and nothing else to turn a shopper's state into a list,
so that what evaluation measures is what shoppers get.

Per event the worker does (``params`` = :meth:`ScoringParams.from_settings`)::

    history = add_to_history(history, item_id, confidence, ts_ms,          # user table
                             history_max=params.history_max,
                             decay_half_life_s=params.decay_half_life_s, bought=is_buy)
    session = add_to_session(session, item_id, max_len=params.session_max)  # session table
    rec = score_event(model, history, session, item_id, params)
    if params.filter_shown:
        session = add_shown(session, rec.item_ids(model), max_len=params.session_max)

and ``batch.evaluate`` replays test events through exactly these calls.

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
   candidates, ``x_u`` folded in from the user's history (:func:`fold_in_user`).
6. **Blend** (Agarwal et al., arXiv:1806.11371): ``s`` and ``x_u · y`` are
   each normalised within the candidates (min-max to [0, 1], or by rank) and
   mixed as ``(1 - blend) * s + blend * personal``; the best ``n`` win, ties
   to the lower index.
7. **Fall-backs** fill what is left of ``n``: the most popular items of the
   query item's category, then the most popular overall. Their scores are
   negative, in list order, so they always rank below the candidates.

``strategy`` names the path: ``personalized_similar`` and ``similar`` (the
query item is known), ``session_fold_in`` and ``session_similar`` (it is
not, the session's other items gave candidates; ``session_fold_in`` also when
only the folded-in vector could rank the popular items), ``popular_category``
and ``popular``. A list topped up by a fall-back says so: ``similar+popular``.

Items are model indices (rows of ``item_factors``); -1 or any value outside
``[0, n_items)`` is unknown. :func:`to_indices` maps external ids. What can
be computed once per model (popular lists, padded neighbour arrays, YᵀY) is
cached per model object and dropped with it. A scoring process should hold
BLAS to one thread (``threadpoolctl`` or ``OPENBLAS_NUM_THREADS=1``): the
matrices are tiny and thread hand-offs cost more than they save.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg.lapack import dposv as _posv

from shared.model import Model

__all__ = [
    "Recommendation", "SourceWeights", "ScoringParams", "History", "Session",
    "fold_in_user", "add_to_history", "add_to_session", "add_shown", "to_indices",
    "history_arrays", "score_event", "recommend", "recommend_for_user", "normalise",
    "blend_scores", "popular_items", "anchor_weights",
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
        weights = np.array([getattr(self, name) for name in SOURCES], dtype=np.float64)
        object.__setattr__(self, "weight_array", weights)
        object.__setattr__(self, "_plans", {})
        object.__setattr__(self, "active", tuple(
            (s, float(getattr(self, name)), float(getattr(self, f"{name}_decay")))
            for s, name in enumerate(SOURCES) if getattr(self, name) > 0))

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
    disliked item (p = 0) with confidence |c|.

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
        YᵀY, precomputed (:attr:`shared.model.Model.gram`); computed when absent.

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
    c = np.asarray(confidence, dtype=np.float64)
    y_u = item_factors[items].astype(np.float64)
    a = gram + (y_u.T * (np.abs(c) - 1.0)) @ y_u
    a.flat[::n_factors + 1] += regularization
    b = y_u.T @ np.where(c > 0, c, 0.0)
    _, x, info = _posv(a, b, overwrite_a=1, overwrite_b=0)
    if info != 0:  # not positive definite (λ = 0, or |c| < 1): general solver
        x = np.linalg.lstsq(gram + (y_u.T * (np.abs(c) - 1.0)) @ y_u
                            + regularization * np.eye(n_factors), b, rcond=None)[0]
    return x


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
    conf = [1.0 + (c - 1.0) * factor for c in history.confidence]
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
    if len(items) > history_max:
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
        """Take the scoring settings from a :class:`shared.config.Settings`."""
        sources = SourceWeights(**{name: getattr(settings, f"source_{name}")
                                   for name in SourceWeights.__dataclass_fields__})
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


def to_indices(model: Model, item_ids) -> np.ndarray:
    """Model indices of external ids; -1 for ids the model does not know.

    Examples
    --------
    >>> m = _example_model()
    >>> to_indices(m, ["i2", "nope", "i0"]).tolist()
    [2, -1, 0]
    """
    index = model.item_index
    return np.fromiter((index.get(i, -1) for i in item_ids), dtype=np.int64)


def history_arrays(model: Model, history: History) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, confidence) of a history's items the model knows.

    Examples
    --------
    >>> m = _example_model()
    >>> history_arrays(m, History(items=("i1", "x"), confidence=(3.0, 2.0), last_ts_ms=(0, 0)))
    (array([1]), array([3.]))
    """
    idx = to_indices(model, history.items)
    known = idx >= 0
    return idx[known], np.asarray(history.confidence, dtype=np.float64)[known]


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
        self.regularization = model.regularization if "params" in model.meta else 0.0
        # The neighbour lists with their padding (and any index out of range)
        # pointing at the dummy item ``n_items``, which is always blocked.
        self.lists = []
        for items, scores in ((model.similar_items, model.similar_scores),
                              (model.cooc_items, model.cooc_scores),
                              (model.next_items, model.next_scores)):
            items = np.asarray(items, dtype=np.int64)
            items = np.where((items >= 0) & (items < n_items), items, n_items)
            scores = np.where(items < n_items, np.maximum(scores, 0), 0).astype(np.float64)
            self.lists.append((items, scores))
        self.widths = tuple(items.shape[1] for items, _ in self.lists)


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


class _Scratch:
    """Per-thread work arrays of one model: merge slots and block flags (reset after use)."""

    def __init__(self, n_items: int):
        self.slots = np.zeros(n_items + 1, dtype=np.int64)
        self.flags = np.zeros(n_items + 1, dtype=bool)
        self.flags[n_items] = True  # the padding of neighbour lists


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
# Normalising and blending
# ---------------------------------------------------------------------------

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
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return scores
    if method == "minmax":
        low, high = scores.min(), scores.max()
        if high <= low:
            return np.ones_like(scores)
        return (scores - low) / (high - low)
    if method == "rank":
        if len(scores) == 1:
            return np.ones(1)
        order = np.sort(scores)[::-1]
        rank = np.searchsorted(-order, -scores, side="left")
        return 1.0 - rank / (len(scores) - 1)
    raise ValueError(f"unknown normalisation {method!r}; use one of {NORMALISATIONS}")


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
    return (1.0 - blend) * sim + blend * normalise(personal, normalisation)


def anchor_weights(n_anchors: int, decay: float) -> np.ndarray:
    """Weight of each anchor, oldest first: ``decay ** steps before the newest``.

    Examples
    --------
    >>> anchor_weights(3, 0.5).tolist(), anchor_weights(2, 0.0).tolist()
    ([0.25, 0.5, 1.0], [0.0, 1.0])
    """
    return np.power(float(decay), np.arange(n_anchors - 1, -1, -1, dtype=np.float64))


# ---------------------------------------------------------------------------
# Recommending
# ---------------------------------------------------------------------------

def _fold_in_known(prep: _Prepared, items, confidence) -> np.ndarray | None:
    """:func:`fold_in_user` over the items the model knows; None when it knows none."""
    items = np.asarray(items, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    known = (items >= 0) & (items < prep.n_items)
    if not known.all():
        items, confidence = items[known], confidence[known]
    if len(items) == 0:
        return None
    return fold_in_user(prep.item_factors, items, confidence,
                        regularization=prep.regularization, gram=prep.gram)


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


def _top(items: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (item, score) pairs, best first, ties to the lower index."""
    if len(items) > n:
        cut = np.argpartition(-scores, n - 1)[:n]
        # Keep every item tied with the n-th so ties resolve by index.
        cut = np.flatnonzero(scores >= scores[cut].min())
        items, scores = items[cut], scores[cut]
    order = np.lexsort((items, -scores))[:n]
    return items[order], scores[order]


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
    n_items = prep.n_items
    query = int(query_item) if 0 <= int(query_item) < n_items else -1

    # Anchors: the recent session items, newest last, with the query item as the newest.
    session = np.asarray(session_items, dtype=np.int64).ravel()
    anchors = session
    if query >= 0 and (len(anchors) == 0 or anchors[-1] != query):
        anchors = np.append(anchors, query)
    anchors = anchors[(anchors >= 0) & (anchors < n_items)][-sources.window:]

    if user_factors is None and blend > 0 and len(history_items):
        user_factors = _fold_in_known(prep, history_items, history_confidence)
    elif user_factors is not None and not np.any(user_factors):
        user_factors = None
    personal_on = user_factors is not None and blend > 0

    groups = (bought, shown, [query] if exclude_query and query >= 0 else None,
              session if exclude_session else None)
    with _Blocked(_scratch(model, n_items), n_items, groups, unavailable) as blocked:
        parts_items, parts_scores, names = [], [], []
        cand, sim = _candidates(model, prep, anchors, sources, blocked)
        if len(cand):
            personal = None
            if personal_on and 0 < sources.pool < len(cand):
                best = np.argpartition(-sim, sources.pool - 1)[:sources.pool]
                cand, sim = cand[best], sim[best]
            if personal_on:
                personal = prep.item_factors[cand] @ user_factors.astype(np.float32)
            top_items, top_scores = _top(cand, blend_scores(sim, personal, blend, normalisation), n)
            parts_items.append(top_items)
            parts_scores.append(top_scores)
            if query >= 0:
                names.append("personalized_similar" if personal_on else "similar")
            else:
                names.append("session_fold_in" if personal_on else "session_similar")
        elif personal_on:
            pool = prep.popular[:FOLD_IN_POOL]
            pool = pool[blocked.allowed(pool)]
            if len(pool):
                personal = prep.item_factors[pool] @ user_factors.astype(np.float32)
                top_items, top_scores = _top(pool, normalise(personal, normalisation), n)
                parts_items.append(top_items)
                parts_scores.append(top_scores)
                names.append("session_fold_in")

        chosen = parts_items[0] if parts_items else np.zeros(0, dtype=np.int64)
        if len(chosen) < n:
            category = int(prep.item_category[query]) if query >= 0 else int(query_category)
            fill, fill_names = _fill(prep, chosen, n, category, blocked)
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


def _plan(sources: SourceWeights, m: int, widths: tuple) -> tuple[list, np.ndarray]:
    """Per (sources, number of anchors, list widths): which rows each source reads, the
    anchor weights, and the source of every merged entry. Cached on ``sources``."""
    key = (m, widths)
    cached = sources._plans.get(key)
    if cached is None:
        plan, source = [], []
        for s, _, decay in sources.active:
            last_only = decay == 0.0 or m == 1
            n_rows = 1 if last_only else m
            w = None if last_only else anchor_weights(m, decay)
            if s < len(widths):
                plan.append((s, last_only, None if w is None else w[:, None]))
                source.append(np.full(n_rows * widths[s], s))
            else:
                plan.append((s, last_only, np.ones(1) if w is None else w))
                source.append(np.full(n_rows, s))
        cached = (plan, np.concatenate(source) if source else np.zeros(0, dtype=np.int64))
        if len(sources._plans) < 256:
            sources._plans[key] = cached
    return cached


def _candidates(model: Model, prep: _Prepared, anchors: np.ndarray, sources: SourceWeights,
                blocked: _Blocked) -> tuple[np.ndarray, np.ndarray]:
    """Merged candidates of all sources and their similarity (weighted, max-normalised sums)."""
    m = len(anchors)
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    plan, source = _plan(sources, m, prep.widths)
    cand_parts, value_parts = [], []
    for s, last_only, w in plan:
        rows = anchors[-1:] if last_only else anchors
        if s < len(prep.lists):
            items, scores = prep.lists[s]
            cand_parts.append(items[rows].ravel())
            value_parts.append((scores[rows] if w is None else scores[rows] * w).ravel())
        else:  # the session's own items
            cand_parts.append(rows)
            value_parts.append(w)
    if len(cand_parts) == 1:
        cand, values = cand_parts[0], value_parts[0]
    else:
        cand = np.concatenate(cand_parts)
        values = np.concatenate(value_parts)
    keep = blocked.allowed(cand)
    cand, values, source = cand[keep], values[keep], source[keep]
    if len(cand) == 0:
        return cand, values
    # Merge duplicates without sorting: an item's slot is its last position.
    slots = _scratch(model, prep.n_items).slots
    position = np.arange(len(cand))
    slots[cand] = position
    owner = slots[cand]
    first = owner == position
    unique = cand[first]
    inverse = (np.cumsum(first) - 1)[owner]
    n_unique = len(unique)
    sums = np.bincount(source * n_unique + inverse, weights=values,
                       minlength=len(SOURCES) * n_unique).reshape(len(SOURCES), n_unique)
    top = sums.max(axis=1)
    weights = sources.weight_array
    scale = np.divide(weights, top, out=np.zeros_like(weights), where=top > 0)
    return unique, scale @ sums


def score_event(model: Model, history: History, session: Session, query_item,
                params: ScoringParams, *, query_category: str | None = None,
                unavailable: np.ndarray | None = None,
                user_factors: np.ndarray | None = None) -> Recommendation:
    """The list for one event, from the shopper's state after the event.

    This is the whole per-event step of the worker and of the replay: ids to
    model indices, the filters the settings ask for, :func:`recommend`.

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
    query = model.item_index.get(query_item, -1)
    category = -1
    if query < 0 and query_category is not None:
        category = prep.category_index.get(query_category, -1)
    items, confidence = history_arrays(model, history)
    session_items = to_indices(model, session.items)
    return recommend(
        model, query, items, confidence, session_items=session_items,
        bought=to_indices(model, history.bought) if params.filter_bought and history.bought else (),
        shown=to_indices(model, session.shown) if params.filter_shown and session.shown else (),
        unavailable=unavailable, n=params.n, blend=params.blend, sources=params.sources,
        normalisation=params.normalisation, exclude_query=params.exclude_query,
        exclude_session=params.exclude_session, query_category=category,
        user_factors=user_factors)


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
    if user_factors is None and len(history_items):
        user_factors = _fold_in_known(prep, history_items, history_confidence)
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
