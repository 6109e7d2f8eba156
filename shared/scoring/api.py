"""The public face of the scoring path: :func:`score_events`, :func:`score_event`, :func:`score_catalogue`.

A :class:`Request` is a shopper's state after one event, in external ids:
the user's :class:`History`, the event's :class:`Session`, the event's item
and its category. :func:`score_events` turns a batch of requests into their
lists, :func:`score_event` is that call on a batch of one, and
:func:`score_catalogue` ranks every item of the catalogue for the same kind
of request (the original project's ``user_items`` and ``ensemble``). The
stream worker and batch evaluation call these and nothing else to turn a
state into a list, so that what evaluation measures is what shoppers get.

The per-event path
------------------
The stream worker (:mod:`stream.agents`) keeps a shopper's state in one
``users`` row (:class:`shared.state.UserState`: the history and the latest
sessions). Per event, with ``rule`` = :meth:`shared.state.StateRule.from_settings`
and ``params`` = :meth:`ScoringParams.from_settings`::

    user = apply_event(event, user, rule, partition=partition, offset=offset)
    session = user.session(event.session_id)
    rec = score_events(model, [(user.history, session, event.item_id, event.category)],
                       params)[0]
    if params.filter_shown:
        session = add_shown(session, rec.item_ids(model), max_len=params.session_max)
        user = replace(user, sessions=with_session(user.sessions, event.session_id,
                                                   session, rule))

:func:`shared.state.apply_event` adds the event to the row's history
(:func:`add_to_history`; an event weighted 0 adds nothing there) and to its
session (:func:`add_to_session`), and the worker writes the row, history
and session in one write. With ``filter_shown`` the event is scored before
the row is written, since the row must hold the items shown; otherwise the
worker gathers the requests of a micro-batch and scores them with one call
of :func:`score_events`, each from the row after its own event. The replay
of ``batch.evaluate`` applies the same two rules and :func:`score_event`.

Scoring one request
-------------------
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
   to the lower index. Without candidates, the ``FOLD_IN_POOL`` most popular
   items are ranked by ``x_u · y`` alone.
7. **Fall-backs** fill what is left of ``n``: the most popular items of the
   query item's category, then the most popular overall. Their scores are
   negative, in list order, so they always rank below the candidates.

``strategy`` names the path: ``personalized_similar`` and ``similar`` (the
query item is known), ``session_fold_in`` and ``session_similar`` (it is
not, the session's other items gave candidates; ``session_fold_in`` also when
only the folded-in vector could rank the popular items), ``popular_category``
and ``popular``. A list topped up by a fall-back says so: ``similar+popular``.
:func:`score_catalogue` gives ``user_items``, ``ensemble`` or ``popular``.

Scoring a batch
---------------
:func:`score_events` computes the lists of many requests together: the
fold-ins as stacks of small systems, and candidates, filters, normalisation,
blend and the best ``n`` as flat arrays over the batch, one segment per list.
A list does not depend on the rest of its batch, bit for bit: every sum runs
over one list's own entries in a fixed order, each stacked system is solved on
its own, and the personal scores are one matrix-vector product per list. So
the worker's micro-batches give the lists that evaluation measures replaying
one event at a time.

The state keeps external ids (they outlive model versions); an id the model
does not know is ignored as an anchor, a history item or a filter, and an
unknown query item takes its category from the request. What can be
computed once per model (popular lists, padded neighbour arrays, YᵀY and the
fold-in's W = YL⁻ᵀ, n_items × k floats) is cached per model object and
dropped with it. A scoring process should hold BLAS to one thread
(``threadpoolctl`` or ``OPENBLAS_NUM_THREADS=1``): the matrices are tiny and
thread hand-offs cost more than they save.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shared.model import Model
from shared.scoring.candidates import _state_request
from shared.scoring.catalogue import _rank_catalogue
from shared.scoring.example import _example_model  # noqa: F401  (the examples' model)
from shared.scoring.history import History, Session, add_to_history, add_to_session  # noqa: F401
from shared.scoring.params import ScoringParams
from shared.scoring.prepared import _prepare, _Prepared
from shared.scoring.ranking import Recommendation, _rank


class Request(NamedTuple):
    """A shopper's state after one event: what one list is scored from.

    A plain tuple ``(history, session, query_item, query_category)`` is the
    same request without a fixed vector.

    Attributes
    ----------
    history : History
        The user's history, the event already added (:func:`add_to_history`).
    session : Session
        The event's session, the event already added (:func:`add_to_session`).
    query_item : str or None
        External id of the event's item; None (or an id the model does not
        know) when there is no item to start from.
    query_category : str or None
        The event's category, used when the model does not know the item.
    user_factors : ndarray, optional
        A fixed user vector instead of the one folded in from ``history``
        (all zeros: no personal score).
    """

    history: History
    session: Session
    query_item: str | None
    query_category: str | None = None
    user_factors: np.ndarray | None = None


def _requests(model: Model, prep: _Prepared, requests, params: ScoringParams) -> list:
    """The requests in model indices (:func:`shared.scoring.candidates._state_request`)."""
    return [_state_request(model, prep, params, *request) for request in requests]


def score_events(model: Model, requests, params: ScoringParams, *,
                 unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request, computed together (the module docstring's seven steps).

    A list is the same, bit for bit, whatever else is in its batch.

    Parameters
    ----------
    model : Model
    requests : sequence of Request
        Or of plain ``(history, session, query_item, query_category)``
        tuples; the same user may come more than once.
    params : ScoringParams
    unavailable : ndarray of bool, shape (n_items,), optional
        True for items that cannot be shown (out of stock), in every list.

    Returns
    -------
    list of Recommendation
        One per request, in order.

    Examples
    --------
    Item 0's similar items are 1 then 2; an item the model does not know
    gets the popular items of its category (b: i3, i2), then overall.

    >>> m = _example_model()
    >>> p = ScoringParams(n=2, blend=0.0)
    >>> s = add_to_session(Session(), "i0", max_len=10)
    >>> [r.item_ids(m) for r in score_events(m, [(History(), s, "i0", None),
    ...                                          (History(), Session(), "new", "b")], p)]
    [['i1', 'i2'], ['i3', 'i2']]
    """
    prep = _prepare(model)
    return _rank(model, prep, _requests(model, prep, requests, params), params, unavailable)


def score_event(model: Model, history: History, session: Session, query_item,
                params: ScoringParams, *, query_category: str | None = None,
                unavailable: np.ndarray | None = None,
                user_factors: np.ndarray | None = None) -> Recommendation:
    """The list for one event: :func:`score_events` on the batch of one :class:`Request`.

    Parameters are the fields of :class:`Request`, ``params`` and
    ``unavailable`` as :func:`score_events` takes them.

    Returns
    -------
    Recommendation

    Examples
    --------
    A user who liked item 2 gets it first among item 0's similar items.

    >>> m = _example_model()
    >>> h = add_to_history(History(), "i0", 4.75, 0, history_max=10)
    >>> s = add_to_session(Session(), "i0", max_len=10)
    >>> score_event(m, h, s, "i0", ScoringParams(n=2, blend=0.0)).item_ids(m)
    ['i1', 'i2']
    >>> h = add_to_history(History(), "i2", 16.0, 0, history_max=10)
    >>> r = score_event(m, h, Session(), "i0", ScoringParams(n=2, blend=0.8))
    >>> r.item_ids(m), r.strategy
    (['i2', 'i1'], 'personalized_similar')
    >>> r = score_event(m, History(), Session(), "new", ScoringParams(n=3), query_category="b")
    >>> r.item_ids(m), r.strategy
    (['i3', 'i2', 'i0'], 'popular_category+popular')
    """
    request = Request(history, session, query_item, query_category, user_factors)
    return score_events(model, [request], params, unavailable=unavailable)[0]


def score_catalogue(model: Model, requests, params: ScoringParams, *,
                    unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request with every item of the catalogue as a candidate.

    The user's taste ``x_u · y_i`` (``x_u`` folded in from the history, or
    the request's fixed vector) ranks the whole catalogue (``user_items``);
    with a query item the model knows and ``blend`` < 1 it is blended with
    the factor cosine to that item, ``(1 - blend) * cosine + blend * taste``
    after ``normalisation`` (``ensemble``). A user without a vector gets the
    most popular items overall (``popular``). The filters of ``params``
    apply as in :func:`score_events`; the sources, ``pool`` and the category
    fall-back do not. A list does not depend on the rest of its batch.

    Parameters and returns as :func:`score_events`.

    Examples
    --------
    >>> m = _example_model()
    >>> h = add_to_history(History(), "i2", 16.0, 0, history_max=10)
    >>> [r.item_ids(m) for r in score_catalogue(m, [(h, Session(), "i2", None)],
    ...                                         ScoringParams(n=2, blend=1.0))]
    [['i3', 'i1']]
    """
    prep = _prepare(model)
    return _rank_catalogue(model, prep, _requests(model, prep, requests, params), params,
                           unavailable)
