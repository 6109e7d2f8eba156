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

Modules
-------
The package is split by concept; this module is its one public face and
re-exports every name callers use (import from ``shared.scoring``, not from
the modules):

- :mod:`~shared.scoring.params`: :class:`SourceWeights`, :class:`ScoringParams`,
  :data:`SOURCES`, :data:`NORMALISATIONS`.
- :mod:`~shared.scoring.history`: :class:`History`, :class:`Session`, their
  update rules (:func:`add_to_history`, :func:`add_to_session`,
  :func:`add_shown`) and :func:`to_indices` / :func:`history_arrays`.
- :mod:`~shared.scoring.foldin`: :func:`fold_in_user` and the batched
  (Woodbury) fold-in, :func:`_fold_in_batch`.
- :mod:`~shared.scoring.prepared`: the per-model cache (:func:`prepare`) and
  the per-thread scratch arrays.
- :mod:`~shared.scoring.segments`: per-list (segment) maths on flat arrays:
  :func:`normalise`, :func:`blend_scores`, :func:`anchor_weights`, the best ``n``.
- :mod:`~shared.scoring.candidates`: requests, gathering the sources' entries
  and merging them into candidates (steps 1 to 3).
- :mod:`~shared.scoring.ranking`: similarity, blend, the best ``n`` and the
  fall-backs (steps 4 to 7), :class:`Recommendation`, :func:`popular_items`.
- :mod:`~shared.scoring.api`: the entry points :func:`recommend`,
  :func:`score_event`, :func:`score_events`, :func:`recommend_for_user`.
- :mod:`~shared.scoring.example`: the small model of the examples.

:data:`MERGE_SLOTS` and :data:`_SORT_ALL` are defined here and read from this
module at call time, so setting them on ``shared.scoring`` takes effect.
"""

from __future__ import annotations

from shared.scoring.params import NORMALISATIONS, SOURCES, ScoringParams, SourceWeights
from shared.scoring.history import (History, Session, add_shown, add_to_history, add_to_session,
                                    history_arrays, to_indices)
from shared.scoring.foldin import FOLD_IN_STEP, _fold_in_batch, fold_in_user
from shared.scoring.prepared import _local, _prepare, _Prepared, prepare
from shared.scoring.segments import anchor_weights, blend_scores, normalise
from shared.scoring.ranking import FOLD_IN_POOL, Recommendation, popular_items
from shared.scoring.api import recommend, recommend_for_user, score_event, score_events
from shared.scoring.example import _example_model

__all__ = [
    "Recommendation", "SourceWeights", "ScoringParams", "History", "Session",
    "fold_in_user", "add_to_history", "add_to_session", "add_shown", "to_indices",
    "history_arrays", "score_event", "score_events", "recommend", "recommend_for_user",
    "normalise", "blend_scores", "popular_items", "anchor_weights",
]

#: Most merge slots (rows × (n_items + 1)) one scoring thread keeps: a batch with more
#: rows than fit is ranked in chunks of rows (read by :func:`shared.scoring.ranking._rank`).
MERGE_SLOTS = 1 << 22
#: Above this many entries :func:`shared.scoring.segments._best` cuts each segment to its
#: best before sorting.
_SORT_ALL = 2048
