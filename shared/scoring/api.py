"""The public entry points: :func:`recommend`, :func:`score_event`, :func:`score_events`, :func:`recommend_for_user`.

Each turns its caller's inputs (model indices, or a shopper's state with
external ids) into requests and hands them to the one ranking of
:mod:`shared.scoring.ranking`; nothing here ranks on its own, so the worker,
the replay and the views get their lists the same way.
"""
from __future__ import annotations


import numpy as np

from shared.model import Model
from shared.scoring.candidates import _request, _state_request
from shared.scoring.example import _example_model  # noqa: F401  (the examples' model)
from shared.scoring.foldin import _fold_in_batch
from shared.scoring.history import History, Session, add_to_history, add_to_session  # noqa: F401
from shared.scoring.params import ScoringParams, SourceWeights
from shared.scoring.prepared import _prepare, _Prepared, _scratch
from shared.scoring.ranking import Recommendation, _Blocked, _fill, _rank
from shared.scoring.segments import _top, blend_scores


def _known(prep: _Prepared, items, confidence) -> tuple[list, list]:
    """The (items, confidence) of a history that the model knows, as lists."""
    items = np.asarray(items, dtype=np.int64).ravel()
    known = (items >= 0) & (items < prep.n_items)
    return items[known].tolist(), np.asarray(confidence, dtype=np.float64).ravel()[known].tolist()


def _ints(values) -> list:
    return np.asarray(list(values) if isinstance(values, (set, frozenset)) else values,
                      dtype=np.int64).ravel().tolist()


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
